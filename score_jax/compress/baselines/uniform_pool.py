"""Uniform pooling (LLaVA-OneVision style): average-pool each frame's token grid to a smaller grid.

The grid (gh, gw) is chosen so that T * gh * gw is closest to the budget k (ties: fewer tokens, then the squarer grid), e.g.
4x4 -> 2x2 at 25%, 4x4 -> 1x2 at 10% of 16 tokens per frame. Pooled tokens replace the originals and
are numbered contiguously (there is no original position for a pooled token): the registered compressor
"uniform_pool" returns them as a new, shorter video (`compressed.new_video`, span T * gh * gw).
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from score_jax.compress.baselines.registry import register_compressor
from score_jax.compress.compressed import Compressed, new_video


def pool_grid(t: int, side: int, k: int) -> tuple[int, int]:
  best = None
  for gh in range(1, side + 1):
    for gw in range(1, side + 1):
      score = (abs(t * gh * gw - k), t * gh * gw, abs(gh - gw))
      if best is None or score < best[0]:
        best = (score, (gh, gw))
  return best[1]


def area_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of adaptive average pooling (PyTorch's adaptive_avg_pool bins)."""
  w = np.zeros((out_size, in_size), np.float32)
  for o in range(out_size):
    lo, hi = (o * in_size) // out_size, math.ceil((o + 1) * in_size / out_size)
    w[o, lo:hi] = 1.0 / (hi - lo)
  return w


def pool_to_grid(visual: jnp.ndarray, gh: int, gw: int) -> jnp.ndarray:
  """[B, T, P, d] -> [B, T * gh * gw, d]: each frame's square token grid average-pooled to gh x gw."""
  b, t, p, d = visual.shape
  side = math.isqrt(p)
  if side * side != p:
    raise ValueError(f"uniform pooling needs a square token grid per frame; got {p} tokens.")
  grid = visual.reshape(b, t, side, side, d)
  out = jnp.einsum("oh,bthwd,pw->btopd", jnp.asarray(area_matrix(side, gh)), grid,
                   jnp.asarray(area_matrix(side, gw)))
  return out.reshape(b, t * gh * gw, d)


def uniform_pool(visual: jnp.ndarray, k: int) -> jnp.ndarray:
  """[B, T, P, d] -> pooled tokens [B, T * gh * gw, d] with T * gh * gw closest to k."""
  _, t, p, _ = visual.shape
  return pool_to_grid(visual, *pool_grid(t, math.isqrt(p), k))


@register_compressor("uniform_pool")
def uniform_pool_compress(visual, k: int, *, key=None, extras=None) -> Compressed:
  del key, extras
  return new_video(uniform_pool(visual, k))
