"""Wall-clock timing for the benchmark scripts: the median of repeated calls after a warm-up."""
from __future__ import annotations

import time

import jax
import numpy as np


def median_seconds(fn, *args, repeats: int):
  """(median wall seconds of `repeats` calls of `fn(*args)`, the warm-up call's result). One warm-up call
  (compilation) first; every call is waited for with `jax.block_until_ready` (other results pass through)."""
  out = jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), out
