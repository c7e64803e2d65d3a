"""A training workdir as a ledger: the run's config is written once and every resume is checked against it.

    workdir/config.json     the config the run started with (never rewritten)
    workdir/history.jsonl   one line per start or resume: time, command line, and the config keys
                            changed on purpose (`--allow_config_change=KEY,...`)

`effective_config(workdir)` is config.json with the recorded changes applied: what `eval` rebuilds
the policy from. Keys in `FREE_KEYS` (where files go, logging, evaluation) do not change what
training computes; they may differ on resume and are recorded without asking.
"""
from __future__ import annotations

import json
import os
import sys
import time

import ml_collections

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.jsonl"
FREE_KEYS = ("workdir", "crash_after_step", "log_every", "checkpoint_every", "keep_checkpoints", "eval.",
             "compilation_cache_dir", "model.answer_reading", "model.max_new_tokens",
             "model.attention", "score_eval.")


class WorkdirError(ValueError):
  """A workdir that holds another run, or a run record that cannot be read."""


def flatten(tree: dict, prefix: str = "") -> dict:
  """{"rl": {"ratio": 0.1}} -> {"rl.ratio": 0.1}; lists and tuples compare as lists."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
  return out


def config_changes(saved: dict, new: dict) -> dict:
  """{key: [saved value, new value]} for every flattened key that differs (None: absent)."""
  a, b = flatten(saved), flatten(new)
  return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _is_free(key: str) -> bool:
  return any(key == f or (f.endswith(".") and key.startswith(f)) for f in FREE_KEYS)


def _allowed(key: str, allow: tuple[str, ...]) -> bool:
  return "*" in allow or any(key == a or key.startswith(a.rstrip(".") + ".") for a in allow)


def _unflatten_set(tree: dict, key: str, value) -> None:
  *parents, leaf = key.split(".")
  for p in parents:
    tree = tree.setdefault(p, {})
  if value is None:
    tree.pop(leaf, None)
  else:
    tree[leaf] = value


def read_history(workdir: str) -> list[dict]:
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return []
  out = []
  with open(path, "rb") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          out.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
          raise WorkdirError(f"{path}:{n} is not valid JSON ({e}).") from None
  return out


def effective_config_dict(workdir: str) -> dict:
  """config.json of the run with every recorded change applied, as a plain dict."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise WorkdirError(f"{path} is missing: it records how the run's policy was built.")
  try:
    with open(path, "rb") as f:
      tree = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise WorkdirError(f"{path} is not valid JSON ({e}).") from None
  for entry in read_history(workdir):
    for key, (_, new) in entry.get("changes", {}).items():
      _unflatten_set(tree, key, new)
  return tree


def effective_config(workdir: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """`effective_config_dict` as a ConfigDict, with dotted `overrides` ({"a.b": value}) set on top."""
  tree = effective_config_dict(workdir)
  for key, value in (overrides or {}).items():
    _unflatten_set(tree, key, value)
  return ml_collections.ConfigDict(tree)


def _write_new(path: str, text: str) -> None:
  """Creates `path` with `text`; never replaces an existing file (O_EXCL), complete or absent."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  try:
    os.link(tmp, path)  # fails if path exists: an existing run record is never overwritten
  finally:
    os.remove(tmp)


def _append_history(workdir: str, entry: dict) -> None:
  entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, **entry}
  with open(os.path.join(workdir, HISTORY_FILE), "a") as f:
    f.write(json.dumps(entry) + "\n")


def has_checkpoints(workdir: str) -> bool:
  ckpt = os.path.join(workdir, "checkpoints")
  return os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))


def open_run(workdir: str, config, allow_changes=(), write: bool = True) -> str:
  """Starts or resumes the run in `workdir` with `config`; returns "start" or "resume".

  A new workdir gets config.json; an existing one is compared with it first: keys that change what
  training computes must be named in `allow_changes` ("*" for all), else `WorkdirError` lists them.
  `write=False` (the other processes of a multi-host run) checks without writing.
  """
  allow = tuple(a.strip() for a in allow_changes if a.strip())
  new = json.loads(config.to_json())
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    if has_checkpoints(workdir):
      raise WorkdirError(f"{workdir} has checkpoints but no {CONFIG_FILE}: it is not a run this version can "
                         "resume safely. Use another --config.workdir.")
    if write:
      os.makedirs(workdir, exist_ok=True)
      _write_new(path, json.dumps(new, indent=2))
      _append_history(workdir, {"event": "start"})
    return "start"
  changes = config_changes(effective_config_dict(workdir), new)
  blocked = {k: v for k, v in changes.items() if not _is_free(k) and not _allowed(k, allow)}
  if blocked:
    lines = "\n".join(f"  {k}: {old!r} (saved) -> {v!r} (now)" for k, (old, v) in blocked.items())
    raise WorkdirError(
        f"{workdir} holds a run with other settings ({path}):\n{lines}\n"
        "Resume with the saved settings, pick another --config.workdir, or allow the change on purpose with "
        f"--allow_config_change={','.join(blocked)} (recorded in {HISTORY_FILE}).")
  if write:
    _append_history(workdir, {"event": "resume", "changes": changes})
  return "resume"
