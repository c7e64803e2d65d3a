"""Busy, static, muted backgrounds: smooth colour fields, stripes, blobs, fake shapes and grain."""
from __future__ import annotations

import numpy as np

from score_jax.world.palette import SHAPES, shape_mask


def muted_color(rng: np.random.Generator, n: int = 1) -> np.ndarray:
  """float [n, 3] RGB in 0..255 with low saturation (<= 0.4) and mid value, never a palette colour."""
  h = rng.uniform(0.0, 1.0, n)
  s = rng.uniform(0.05, 0.4, n)
  v = rng.uniform(0.25, 0.7, n)
  i = np.floor(h * 6).astype(int) % 6
  f = h * 6 - np.floor(h * 6)
  p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
  table = np.stack([np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
                    np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1)])
  return table[i, np.arange(n)] * 255.0


def _smooth_field(rng: np.random.Generator, size: int, grid: int) -> np.ndarray:
  """float [size, size, 3]: a grid x grid field of muted colours, bilinearly upsampled."""
  coarse = muted_color(rng, grid * grid).reshape(grid, grid, 3)
  pos = np.linspace(0, grid - 1, size)
  i0 = np.clip(np.floor(pos).astype(int), 0, grid - 2)
  w = (pos - i0)[:, None]
  rows = coarse[i0] * (1 - w)[..., None] + coarse[i0 + 1] * w[..., None]  # [size, grid, 3]
  return rows[:, i0] * (1 - w)[None] + rows[:, i0 + 1] * w[None]


def clutter_background(rng: np.random.Generator, size: int, density: float = 1.0) -> np.ndarray:
  """uint8 [size, size, 3] textured clutter; `density` scales the number of stripes/blobs/shapes/lines."""
  img = _smooth_field(rng, size, int(rng.integers(3, 6)))
  y, x = np.mgrid[0:size, 0:size].astype(np.float32)
  n_stripes, n_blobs, n_shapes, n_lines = rng.poisson(density * rng.uniform([1.5, 5, 3, 4], [3.5, 10, 7, 8]))
  pool = iter(muted_color(rng, n_stripes + n_blobs + n_shapes + n_lines))
  for _ in range(n_stripes):  # striped elliptic patches
    angle, period = rng.uniform(0, np.pi), rng.uniform(3.0, 9.0)
    cy, cx = rng.uniform(0, size, 2)
    ry, rx = rng.uniform(6, size / 2, 2)
    region = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    stripe = np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0
    img[region & stripe] = next(pool)
  for _ in range(n_blobs):  # semi-transparent ellipses
    cy, cx = rng.uniform(0, size, 2)
    ry, rx = rng.uniform(2, 10, 2)
    box = (slice(max(int(cy - ry), 0), int(cy + ry) + 1), slice(max(int(cx - rx), 0), int(cx + rx) + 1))
    region = ((y[box] - cy) / ry) ** 2 + ((x[box] - cx) / rx) ** 2 <= 1.0
    alpha = rng.uniform(0.5, 1.0)
    img[box][region] = img[box][region] * (1 - alpha) + next(pool) * alpha
  for _ in range(n_shapes):  # muted fake shapes, the size of real objects
    s = int(rng.integers(5, 13))
    oy, ox = rng.integers(0, size - s + 1, 2)
    img[oy:oy + s, ox:ox + s][shape_mask(SHAPES[rng.integers(len(SHAPES))], s)] = next(pool)
  for _ in range(n_lines):  # thin horizontal / vertical lines
    r0, c0 = rng.integers(0, size, 2)
    if rng.random() < 0.5:
      img[r0, max(c0 - 12, 0):c0 + 12] = next(pool)
    else:
      img[max(r0 - 12, 0):r0 + 12, c0] = next(pool)
  img += rng.normal(0.0, 6.0, img.shape)  # fine grain
  return np.clip(img, 0, 255).astype(np.uint8)
