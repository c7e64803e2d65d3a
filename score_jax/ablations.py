"""SCORE's ablations as data: each one a set of config overrides of the experiment being ablated.

    python benchmarks/ablations.py --config=experiments/curriculum.py --seeds=0,1,2 --out=workdirs/ablations

Every ablation trains and evaluates each seed in `<out>/<ablation>/seed_<s>` through the ordinary
`train` path (a finished run is reused, an interrupted one resumes); the table gives mean ± std of the
policy's held-out accuracy per set and ratio (and of its adaptive mode, with its mean retention).
"""
from __future__ import annotations

import os
from typing import Callable

from score_jax import config_checks, multi_seed


def _no_stage1(config) -> dict:
  """All curriculum steps on the last stage (the real-video stage), the same total."""
  stages = config_checks.parse_curriculum(config.curriculum)
  return {"curriculum": f"{stages[-1][0]}:{sum(s for _, s in stages)}"}


# name -> (what it removes, overrides: {dotted key: value} or config -> such a dict)
ABLATIONS: dict[str, tuple[str, dict | Callable]] = {
    "score": ("the experiment as configured", {}),
    "no_surprise_state": ("policy state = the token alone (no residual, surprise scalar or memory)",
                          {"policy.use_residual": False, "policy.use_surprise_scalar": False,
                           "policy.use_surprise_memory": False}),
    "summed_reward": ("GRPO on the summed task + compression reward instead of the split advantage",
                      {"rl.advantage": "grpo"}),
    "no_compression_reward": ("compression reward weight 0", {"rl.comp_weight": 0.0}),
    "no_stage1": ("no static pseudo-video stage (its steps go to the last stage)", _no_stage1),
    "no_surprise_memory": ("the paper's state: no running maximum of the surprise",
                           {"policy.use_surprise_memory": False}),
}


def ablated(config, name: str):
  """A copy of `config` with ablation `name`'s overrides applied."""
  if name not in ABLATIONS:
    raise ValueError(f"Unknown ablation {name!r}; known: {', '.join(ABLATIONS)}.")
  overrides = ABLATIONS[name][1]
  overrides = overrides(config) if callable(overrides) else overrides
  c = config.copy_and_resolve_references()
  for key, value in overrides.items():
    found = config_checks.dotted_parent(c, key)
    if found is None:
      raise KeyError(f"Ablation {name!r} sets {key!r}, which the config does not have.")
    node, leaf = found
    node[leaf] = value
  return c


def run_ablations(config, names, seeds, out: str, train_fn) -> dict:
  """{ablation: multi_seed.aggregate(...)} after training (or reusing) every (ablation, seed) run."""
  aggs = {}
  for name in names:
    runs = []
    for seed in seeds:
      c = ablated(config, name)
      c.seed, c.workdir = int(seed), multi_seed.seed_workdir(os.path.join(out, name), int(seed))
      if not os.path.exists(os.path.join(c.workdir, "eval.json")):
        train_fn(c)
      runs.append(multi_seed.read_eval(c.workdir))
    aggs[name] = multi_seed.aggregate(runs)
  return aggs


def format_ablations(aggs: dict, method: str, ratios) -> str:
  """Markdown: one row per ablation, mean ± std over seeds of `method` per held-out set and ratio
  (adaptive mode and its mean retention when the runs report one)."""
  cols = [r for r in ratios if r < 1.0]
  sets = list(next(iter(aggs.values())).keys()) if aggs else []
  head = ["ablation", "seeds"]
  for s in sets:
    head += [f"{s} full"] + [f"{s} {r:.0%}" for r in cols] + [f"{s} adaptive (kept)"]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  fmt = lambda v: "-" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}"
  for name, agg in aggs.items():
    n = max((v[2] for t in agg.values() for v in t.values()), default=0)
    row = [name, str(n)]
    for s in sets:
      t = agg.get(s, {})
      row += [fmt(t.get("full@1.0"))] + [fmt(t.get(f"{method}@{r}")) for r in cols]
      ad, kept = t.get(f"{method} (adaptive)@adaptive"), t.get(f"{method} (adaptive)@kept")
      row.append("-" if ad is None else f"{fmt(ad)} ({kept[0]:.1%} ± {kept[1]:.1%})")
    lines.append("| " + " | ".join(row) + " |")
  lines += [""] + [f"- `{n}`: {ABLATIONS[n][0]}" for n in aggs]
  return "\n".join(lines)
