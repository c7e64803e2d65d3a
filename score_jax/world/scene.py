"""Scene objects on a cell layout, and rendering them over a static background into frames.

Static objects sit inside one `cell` x `cell` cell each (one visual token of the consumer),
distinct cells so nothing overlaps; a mover slides along one row or column band of cells,
whose cells are kept free of other objects.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from score_jax.world.palette import COLORS, OUTLINE_RGB, object_masks


@dataclasses.dataclass
class SceneObject:
  """One object: a shape of `size` px, its top-left (y, x) per frame, its colour per frame (None = absent)."""
  shape: str
  size: int
  pos: np.ndarray  # int [T, 2]
  colors: list[str | None]


def cells_of_box(y: int, x: int, size: int, cell: int) -> set[tuple[int, int]]:
  """Grid cells (row, col) that a size x size box at top-left (y, x) touches."""
  return {(r, c) for r in range(y // cell, (y + size - 1) // cell + 1)
          for c in range(x // cell, (x + size - 1) // cell + 1)}


def place_in_cell(rng: np.random.Generator, cell_rc: tuple[int, int], size: int, cell: int) -> tuple[int, int]:
  """A random top-left for a size x size box lying inside grid cell `cell_rc`."""
  slack = max(cell - size, 0)
  return (cell_rc[0] * cell + int(rng.integers(0, slack + 1)),
          cell_rc[1] * cell + int(rng.integers(0, slack + 1)))


def static_object(shape: str, size: int, yx: tuple[int, int], colors: list[str | None]) -> SceneObject:
  """An object that stays at `yx` for len(colors) frames."""
  return SceneObject(shape, size, np.tile(np.asarray(yx, np.int32), (len(colors), 1)), list(colors))


def linear_path(rng: np.random.Generator, frames: int, size: int, extent: int,
                speed: tuple[int, int]) -> np.ndarray:
  """int [frames] 1-D positions in [0, extent - size] at a constant non-zero speed (no bounces)."""
  hi = extent - size
  v_max = max(1, min(speed[1], hi // max(frames - 1, 1)))
  v = int(rng.integers(min(speed[0], v_max), v_max + 1))
  p0 = int(rng.integers(0, hi - v * (frames - 1) + 1))
  path = p0 + v * np.arange(frames, dtype=np.int32)
  return path if rng.random() < 0.5 else (hi - path).astype(np.int32)


def moving_object(rng: np.random.Generator, shape: str, size: int, color: str, frames: int, extent: int,
                  cell: int, speed: tuple[int, int]) -> tuple[SceneObject, set[tuple[int, int]]]:
  """A mover sliding along a random row or column band, and the cells its path touches."""
  band = int(rng.integers(0, extent // cell))
  cross = band * cell + int(rng.integers(0, max(cell - size, 0) + 1))
  along = linear_path(rng, frames, size, extent, speed)
  if rng.random() < 0.5:  # horizontal
    pos = np.stack([np.full(frames, cross, np.int32), along], -1)
  else:
    pos = np.stack([along, np.full(frames, cross, np.int32)], -1)
  cells: set[tuple[int, int]] = set()
  for y, x in pos:
    cells |= cells_of_box(int(y), int(x), size, cell)
  return SceneObject(shape, size, pos, [color] * frames), cells


def _is_still(obj: SceneObject) -> bool:
  return all(c == obj.colors[0] for c in obj.colors) and bool((obj.pos == obj.pos[0]).all())


def render(background: np.ndarray, objects: list[SceneObject], frames: int,
           relevant: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [T, H, W, 3] frames, bool [T, H, W] footprint of the objects indexed by `relevant`).

  Objects are drawn in list order (later on top) with a dark 1-px outline (part of the footprint);
  still objects are painted once into the shared background. A relevant object's footprint is marked
  in the frames where it is absent too: the empty place where an object will appear is evidence.
  """
  h, w = background.shape[:2]
  still = [_is_still(o) for o in objects]
  canvas = background.copy()
  mask = np.zeros((frames, h, w), bool)
  for k, obj in enumerate(objects):
    if still[k]:
      _paint(canvas, mask if k in relevant else None, obj, 0)
  video = np.broadcast_to(canvas, (frames, h, w, 3)).copy()
  for k, obj in enumerate(objects):
    if not still[k]:
      for t in range(frames):
        _paint(video[t], mask[t] if k in relevant else None, obj, t)
  return video, mask


def _paint(image: np.ndarray, mask: np.ndarray | None, obj: SceneObject, t: int) -> None:
  """Draw `obj` as at frame t into image [H, W, 3]; mark its footprint in mask [..., H, W] if given."""
  footprint, fill = object_masks(obj.shape, obj.size)
  y, x = int(obj.pos[t, 0]), int(obj.pos[t, 1])
  box = (slice(y, y + obj.size), slice(x, x + obj.size))
  if obj.colors[t] is None:
    if mask is not None:
      mask[..., box[0], box[1]] |= footprint
    return
  patch = image[box]
  patch[footprint] = OUTLINE_RGB
  patch[fill] = COLORS[obj.colors[t]]
  if mask is not None:
    mask[..., box[0], box[1]] |= footprint


def cell_labels(objects: list[SceneObject], frames: int, extent: int, cell: int, colors, shapes) -> np.ndarray:
  """int8 [T, G*G, 2]: (colour index, shape index) of the object centred in each grid cell per frame,
  -1 where none; a dense label for training a model's vision side (objects sit in distinct cells)."""
  g = extent // cell
  out = np.full((frames, g * g, 2), -1, np.int8)
  color_idx = {c: i for i, c in enumerate(colors)}
  shape_idx = {s: i for i, s in enumerate(shapes)}
  for obj in objects:
    for t in range(frames):
      if obj.colors[t] is None:
        continue
      cy, cx = (int(v) + obj.size // 2 for v in obj.pos[t])
      out[t, min(cy // cell, g - 1) * g + min(cx // cell, g - 1)] = (color_idx[obj.colors[t]], shape_idx[obj.shape])
  return out
