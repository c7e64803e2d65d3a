"""Multi-host setup: `jax.distributed` start-up and per-process batches turned into global arrays.

On Cloud TPU pods and SLURM clusters `jax.distributed.initialize()` finds the coordinator by itself.
For other launchers (and the loopback test) set SCORE_JAX_COORDINATOR=host:port,
SCORE_JAX_NUM_PROCESSES and SCORE_JAX_PROCESS_ID.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from score_jax.models import sharding as shd


def initialize() -> None:
  """Starts `jax.distributed` (explicit coordinator from the environment, else auto-detection)."""
  coordinator = os.environ.get("SCORE_JAX_COORDINATOR")
  if coordinator:
    try:
      n, i = int(os.environ["SCORE_JAX_NUM_PROCESSES"]), int(os.environ["SCORE_JAX_PROCESS_ID"])
    except (KeyError, ValueError):
      raise ValueError("SCORE_JAX_COORDINATOR is set: SCORE_JAX_NUM_PROCESSES and SCORE_JAX_PROCESS_ID "
                       "must be integers too.") from None
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=n, process_id=i)
  else:
    jax.distributed.initialize()


def is_main_process() -> bool:
  return jax.process_index() == 0


def global_batch(mesh, local: dict[str, np.ndarray]) -> dict:
  """This process's rows of a batch -> global arrays sharded over the mesh's data axes.

  One process: a plain device_put. Several: each contributes its own rows
  (`jax.make_array_from_process_local_data`), so no host ever holds the whole batch.
  """
  out = {}
  for name, x in local.items():
    sharding = shd.batch_sharding(mesh, np.ndim(x))
    if jax.process_count() == 1:
      out[name] = jax.device_put(x, sharding)
    else:
      out[name] = jax.make_array_from_process_local_data(sharding, np.asarray(x))
  return out
