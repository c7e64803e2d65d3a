"""The named colours and shapes that objects are drawn with, and the shape masks."""
from __future__ import annotations

import functools

import numpy as np

# Saturated, bright and 60 degrees apart in hue; the clutter never uses such colours.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "yellow": (245, 230, 20),
    "green": (30, 205, 40),
    "cyan": (20, 215, 230),
    "blue": (40, 70, 245),
    "purple": (200, 40, 230),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "cross")
OUTLINE_RGB = (20, 20, 20)


@functools.lru_cache(maxsize=None)
def shape_mask(shape: str, size: int) -> np.ndarray:
  """bool [size, size] footprint of `shape` filling a size x size box (cached, read-only)."""
  return _readonly(_shape_mask(shape, size))


def _readonly(a: np.ndarray) -> np.ndarray:
  a.flags.writeable = False
  return a


def _shape_mask(shape: str, size: int) -> np.ndarray:
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  c = size / 2.0
  if shape == "square":
    return np.ones((size, size), bool)
  if shape == "circle":
    return (x - c) ** 2 + (y - c) ** 2 <= c * c + 0.5
  if shape == "triangle":  # apex up, base on the bottom row
    return np.abs(x - c) <= y / 2.0 + 0.25
  if shape == "cross":
    arm = max(size / 5.0, 1.0)
    return (np.abs(x - c) <= arm) | (np.abs(y - c) <= arm)
  raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")


@functools.lru_cache(maxsize=None)
def object_masks(shape: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(footprint, fill) bool [size, size]: the shape of size - 2 px and its 1-px outline ring (cached, read-only)."""
  fill = np.pad(shape_mask(shape, size - 2), 1)
  p = np.pad(fill, 1)
  footprint = (p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
               | p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:])
  return _readonly(footprint), _readonly(fill)
