"""Orbax checkpoints of a training run that never lose finished work.

- `restore_latest` walks back from the newest step: a step that cannot be read (or holds
  non-finite values) is skipped with a warning naming it and why, and moved to
  `workdir/damaged_checkpoints/` so that the resumed run can save that step again.
- `all_finite` is the guard every state passes before it is saved.
- `finish` waits for pending asynchronous saves and closes the manager, logging (not raising) its
  own failures so that the error that stopped a run stays the one shown.
"""
from __future__ import annotations

import os
import shutil
import time

from absl import logging
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

CHECKPOINTS = "checkpoints"
DAMAGED = "damaged_checkpoints"


class CheckpointRestoreError(RuntimeError):
  """No checkpoint of a workdir can be restored."""


def manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=True,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), CHECKPOINTS), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, data: dict) -> None:
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)))


@jax.jit
def all_finite(tree) -> jnp.ndarray:
  """True iff every floating-point leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


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
  """(step, state, data) of the newest readable checkpoint of `workdir`, or None if it has none.

  `check_data(data)` may raise ValueError for a checkpoint that does not fit the config (that is a
  config problem, reported as is, not a damaged step).
  """
  ckpt_dir = os.path.join(os.path.abspath(workdir), CHECKPOINTS)
  if not os.path.isdir(ckpt_dir):
    return None
  reader = ocp.CheckpointManager(ckpt_dir)
  skipped = []
  try:
    for step in sorted(reader.all_steps(), reverse=True):
      try:
        restored = reader.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                                data=ocp.args.JsonRestore()))
        problem = None if bool(all_finite(restored["state"])) else "it holds non-finite values"
      except Exception as e:  # orbax/tensorstore raise many types for damaged files
        problem = _reason(e)
      if problem is None:
        if check_data is not None:
          check_data(restored["data"])
        return step, restored["state"], restored["data"]
      skipped.append((step, problem))
      where = _set_aside(ckpt_dir, step) if jax.process_index() == 0 else ckpt_dir
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
