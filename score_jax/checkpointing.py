"""Orbax checkpoints of a training run that never lose finished work.

- `restore_latest` walks back from the newest step: a step that cannot be read (or holds
  non-finite values) is skipped with a warning naming it and why, and moved to
  `workdir/damaged_checkpoints/` so that the resumed run can save that step again.
- `all_finite` is the guard every state passes before it is saved.
- `finish` waits for pending asynchronous saves and closes the manager, logging (not raising) its
  own failures so that the error that stopped a run stays the one shown.

Multi-process runs: every process takes part in each save and restore (orbax writes each array shard
once and the primary host the metadata); the shared JSON (`data`) is written by the primary host, and
each process's own JSON (its data-iterator positions) by that process, in
`<step>/per_process/process_<i>-of-<n>.json`; a restore reads the caller's own file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINTS = "checkpoints"
DAMAGED = "damaged_checkpoints"
PER_PROCESS = "per_process"  # item folder of the per-process JSON files


class CheckpointRestoreError(RuntimeError):
  """No checkpoint of a workdir can be restored."""


class ProcessCountError(ValueError):
  """A checkpoint's per-process data was written by another number of processes than this run has."""


def process_file() -> str:
  """This process's file name in a per-process item: the naming of grain's own orbax handler
  (grain/_src/python/checkpoint/handler.py, grain 0.2.18)."""
  return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


class PerProcessJsonHandler(ocp.CheckpointHandler):
  """Orbax handler for a JSON value of each process's own, written by every process (orbax's JSON handler
  writes from the primary host only); restore reads the caller's file."""

  def save(self, directory, args: "PerProcessSave"):
    (directory / process_file()).write_text(json.dumps(args.item))

  def restore(self, directory, args: "PerProcessRestore | None" = None) -> Any:
    path = directory / process_file()
    if not path.exists():
      found = sorted(p.name for p in directory.iterdir() if re.fullmatch(r"process_\d+-of-\d+\.json", p.name))
      counts = {int(name.split("-of-")[1][:-len(".json")]) for name in found}
      if counts and jax.process_count() not in counts:
        raise ProcessCountError(
            f"{os.path.dirname(str(directory))} holds per-process data {found}, written by {max(counts)} "
            f"processes, but this run is process {jax.process_index()} of {jax.process_count()}: resume it with "
            f"{max(counts)} processes, or use a new --config.workdir.")
      raise FileNotFoundError(f"{path} is missing.")  # a damaged step
    return json.loads(path.read_text())

  def metadata(self, directory):
    return None

  def structure(self, directory):
    return None

  def finalize(self, directory):
    pass

  def close(self):
    pass


@ocp.args.register_with_handler(PerProcessJsonHandler, for_save=True)
@dataclasses.dataclass
class PerProcessSave(ocp.args.CheckpointArgs):
  item: Any


@ocp.args.register_with_handler(PerProcessJsonHandler, for_restore=True)
@dataclasses.dataclass
class PerProcessRestore(ocp.args.CheckpointArgs):
  pass


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINTS), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, data: dict, per_process: dict) -> None:
  """A collective: every process calls it with its own `per_process` JSON (the same `data` everywhere)."""
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data),
                                          **{PER_PROCESS: PerProcessSave(per_process)}))


@jax.jit
def all_finite(tree) -> jnp.ndarray:
  """True iff every floating-point leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def nonfinite_paths(tree, limit: int = 5) -> list[str]:
  """Paths (`jax.tree_util.keystr`) of up to `limit` floating-point leaves of `tree` holding a NaN or inf."""
  bad = [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_leaves_with_path(tree)
         if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(x)))]
  return bad[:limit] + ([f"... {len(bad) - limit} more"] if len(bad) > limit else [])


def _locally_finite(tree) -> bool:
  """`all_finite` over this process's shards only (no collective: a process whose read failed does not
  take part)."""
  for x in jax.tree_util.tree_leaves(tree):
    for part in ([s.data for s in x.addressable_shards] if isinstance(x, jax.Array) else [x]):
      part = np.asarray(part)
      if jnp.issubdtype(part.dtype, jnp.inexact) and not np.isfinite(part).all():
        return False
  return True


def _agree(problem: str | None) -> str | None:
  """One verdict for all processes: a step unreadable on any process is skipped by every process."""
  if jax.process_count() == 1:
    return problem
  from jax.experimental import multihost_utils
  bad = np.asarray(multihost_utils.process_allgather(np.int32(problem is not None)))
  return problem or ("unreadable on another process" if bad.any() else None)


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def _restore_step(reader: ocp.CheckpointManager, ckpt_dir: str, step: int, abstract_state):
  """(state, shared JSON merged with this process's own JSON) of one step."""
  items = dict(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore())
  if os.path.isdir(os.path.join(ckpt_dir, str(step), PER_PROCESS)):
    items[PER_PROCESS] = PerProcessRestore()
  elif jax.process_count() > 1:  # written before per-process data: it holds the primary host's alone
    raise ProcessCountError(f"Checkpoint step {step} in {ckpt_dir} holds one process's data positions: "
                            "resume it with one process, or use a new --config.workdir.")
  restored = reader.restore(step, args=ocp.args.Composite(**items))
  return restored["state"], {**restored["data"], **(restored.get(PER_PROCESS) or {})}


def _reason(e: Exception) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else ""
  return f"{type(e).__name__}: {text[:300]}"


def _set_aside(ckpt_dir: str, step: int) -> str:
  """Moves a damaged step folder out of the manager's way (kept for inspection, never deleted)."""
  dest_root = os.path.join(os.path.dirname(ckpt_dir), DAMAGED)
  os.makedirs(dest_root, exist_ok=True)
  dest = os.path.join(dest_root, f"{step}-{time.strftime('%Y%m%dT%H%M%S')}")
  shutil.move(os.path.join(ckpt_dir, str(step)), dest)
  return dest


def restore_latest(workdir: str, abstract_state, check_data=None):
  """(step, state, data) of the newest readable checkpoint of `workdir`, or None if it has none; `data`
  is the shared JSON merged with the caller's own per-process JSON (`save`).

  `check_data(data)` may raise ValueError for a checkpoint that does not fit the config (that is a
  config problem, reported as is, not a damaged step), as does a checkpoint written by another number
  of processes (`ProcessCountError`). A collective in multi-process runs: all processes agree on the step.
  """
  ckpt_dir = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
  if not os.path.isdir(ckpt_dir):
    return None
  reader = ocp.CheckpointManager(ckpt_dir)
  skipped = []
  try:
    for step in sorted(reader.all_steps(), reverse=True):
      try:
        state, data = _restore_step(reader, ckpt_dir, step, abstract_state)
        problem = None if _locally_finite(state) else "it holds non-finite values"
      except ProcessCountError:
        raise
      except Exception as e:  # orbax/tensorstore raise many types for damaged files
        problem = _reason(e)
      problem = _agree(problem)
      if problem is None:
        if check_data is not None:
          check_data(data)
        return step, state, data
      skipped.append((step, problem))
      where = _set_aside(ckpt_dir, step) if jax.process_index() == 0 else ckpt_dir
      _sync(f"score_jax_set_aside_{step}")  # every process sees the step gone before it saves again
      logging.warning("Skipping checkpoint step %d in %s: %s (moved to %s).", step, ckpt_dir, problem, where)
  finally:
    reader.close()
  if skipped:
    raise CheckpointRestoreError(
        f"No checkpoint in {ckpt_dir} can be restored: "
        + "; ".join(f"step {s}: {p}" for s, p in skipped)
        + f". They were moved to {os.path.join(os.path.dirname(ckpt_dir), DAMAGED)}; rerun to start afresh.")
  return None


def finish(mngr: ocp.CheckpointManager) -> None:
  """Waits for pending saves and closes the manager; failures are logged, never raised."""
  try:
    mngr.wait_until_finished()
  except Exception as e:  # noqa: BLE001  (the caller's error, if any, is the one to show)
    logging.error("A pending checkpoint save failed: %s", _reason(e))
  try:
    mngr.close()
  except Exception as e:  # noqa: BLE001
    logging.error("Closing the checkpoint manager failed: %s", _reason(e))
