"""Per-token relevance from the per-pixel `relevant` mask, for an oracle token-selection baseline.

Tokens follow the consumer's layout: `patch` x `patch` pixel patches pooled to a
`pooled_grid` x `pooled_grid` grid per frame, flattened row-major (token = row * grid + col).
"""
from __future__ import annotations

import numpy as np


def _cells(relevant: np.ndarray, patch: int, pooled_grid: int) -> np.ndarray:
  """[..., T, grid, grid, cell*cell] view of the mask, one row per pooled token's cell."""
  *lead, h, w = relevant.shape
  if h != w or h % patch or (h // patch) % pooled_grid:
    raise ValueError(f"Frames {h}x{w} do not split into {pooled_grid}x{pooled_grid} cells of {patch}-px patches.")
  cell = h // pooled_grid
  x = relevant.reshape(*lead, pooled_grid, cell, pooled_grid, cell)
  x = np.moveaxis(x, -3, -2)  # [..., grid, grid, cell, cell]
  return x.reshape(*lead, pooled_grid, pooled_grid, cell * cell)


def relevant_token_mask(relevant: np.ndarray, patch: int = 8, pooled_grid: int = 4) -> np.ndarray:
  """bool [..., T, pooled_grid**2]: a token is relevant if any relevant pixel falls in its cell."""
  c = _cells(np.asarray(relevant, bool), patch, pooled_grid)
  return c.any(-1).reshape(*c.shape[:-3], pooled_grid * pooled_grid)


def oracle_scores(relevant: np.ndarray, patch: int = 8, pooled_grid: int = 4) -> np.ndarray:
  """float32 [..., T, pooled_grid**2]: the fraction of each token's cell covered by relevant pixels."""
  c = _cells(np.asarray(relevant, bool), patch, pooled_grid)
  return c.mean(-1, dtype=np.float32).reshape(*c.shape[:-3], pooled_grid * pooled_grid)
