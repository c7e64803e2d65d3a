"""LLaVA-OneVision video pooling: per-frame bilinear 2x downsampling of the patch grid (27x27 -> 14x14).

Implemented as two small interpolation matrices that reproduce PyTorch's
`interpolate(mode="bilinear", align_corners=False)` exactly (half-pixel centres, edge clamping),
so the pooled tokens match the reference model bit for bit up to float rounding.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] weights of 1-D bilinear resampling (align_corners=False)."""
  scale = in_size / out_size
  w = np.zeros((out_size, in_size), np.float64)
  for o in range(out_size):
    src = max(scale * (o + 0.5) - 0.5, 0.0)
    i0 = min(int(math.floor(src)), in_size - 1)
    i1 = min(i0 + 1, in_size - 1)
    frac = src - i0
    w[o, i0] += 1.0 - frac
    w[o, i1] += frac
  return w


def pooled_size(side: int) -> int:
  return math.ceil(side / 2)


def pool_frames(features: jnp.ndarray, side: int) -> jnp.ndarray:
  """[N, side*side, d] patch features -> [N, ceil(side/2)**2, d] pooled tokens (row-major)."""
  n, _, d = features.shape
  out = pooled_size(side)
  w = jnp.asarray(bilinear_matrix(side, out), features.dtype)
  grid = features.reshape(n, side, side, d)
  pooled = jnp.einsum("oh,nhwd,pw->nopd", w, grid, w)
  return pooled.reshape(n, out * out, d)
