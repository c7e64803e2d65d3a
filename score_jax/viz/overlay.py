"""Kept-token overlays: the sampled frames in a grid, dropped tokens' patches dimmed, merged ones outlined.

A visual token of LLaVA-OneVision stands for one cell of its frame's pooled grid (gh x gw cells in
raster order, e.g. 4x4 cells of 16x16 pixels for the embedded model's 64x64 frames, 14x14 for 384-pixel
SigLIP frames); `cell_bounds` gives each cell's pixel rectangle on the model-sized frame.

`overlay_image` is exact and measurable: a kept cell shows the frame's pixels unchanged (upscaled by an
integer `scale`, nearest neighbour), a dropped cell the same pixels times `DIM` (integer arithmetic,
`dim`), and a merged cell (a kept slot that carries several tokens' content) a ring of `MERGED_COLOR`
`outline` pixels wide inside its cell. Frames sit in a grid of `cols` columns separated by `pad` pixels
of `BACKGROUND` (`frame_origins`). `overlay_figure` shows the same image with matplotlib, one title per
frame (its kept count), for notebooks.
"""
from __future__ import annotations

import math

import numpy as np

DIM = 77 / 256          # brightness of a dropped token's patch (integer: x * 77 >> 8)
MERGED_COLOR = (255, 196, 0)
BACKGROUND = 255
DEFAULT_COLS = 8
DEFAULT_PAD = 4
TARGET_FRAME_PIXELS = 256  # small frames are upscaled to about this height (`default_scale`)


def keep_mask(indices, num_tokens: int, valid=None) -> np.ndarray:
  """bool [N] (or [B, N]) from kept indices [k] (or [B, k]); `valid` masks padded slots (adaptive keep sets)."""
  idx = np.asarray(indices)
  if idx.ndim not in (1, 2):
    raise ValueError(f"Expected kept indices [k] or [B, k], got shape {idx.shape}.")
  if idx.size and (idx.min() < 0 or idx.max() >= num_tokens):
    raise ValueError(f"Kept indices must lie in [0, {num_tokens}); got {idx.min()}..{idx.max()}.")
  flat = idx.reshape(-1, idx.shape[-1])
  ok = np.ones(flat.shape, bool) if valid is None else np.asarray(valid, bool).reshape(flat.shape)
  out = np.zeros((flat.shape[0], num_tokens), bool)
  for row, (i, v) in enumerate(zip(flat, ok)):
    out[row, i[v]] = True
  return out.reshape(idx.shape[:-1] + (num_tokens,))


def masks_from_compressed(compressed, visual, sample: int = 0, atol: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
  """(kept, merged) bool [N] of one sample from a compressor's output (`score_jax.compress.compressed.Compressed`:
  tokens [B, k, d], positions [B, k], valid [B, k], span) and the video's tokens `visual` [B, N, d] or
  [B, T, P, d]: a valid slot keeps the token at its position; it is merged when its features differ from that
  token's (it carries other tokens' content). A new, shorter video (a pooler: span != N) has no positions
  on the frames and is refused."""
  visual = np.asarray(visual, np.float32)
  flat = visual.reshape(visual.shape[0], -1, visual.shape[-1])[sample]
  n = flat.shape[0]
  if int(compressed.span) != n:
    raise ValueError(f"The compressor made a new video of {compressed.span} tokens, not a subset of the {n} "
                     "tokens on the frames: there is nothing to overlay.")
  pos = np.asarray(compressed.positions)[sample]
  ok = np.asarray(compressed.valid, bool)[sample]
  tokens = np.asarray(compressed.tokens, np.float32)[sample]
  kept, merged = np.zeros(n, bool), np.zeros(n, bool)
  kept[pos[ok]] = True
  differs = ~np.all(np.isclose(tokens, flat[pos], atol=atol, rtol=1e-5), axis=-1)
  merged[pos[ok & differs]] = True
  return kept, merged


def dim(pixels: np.ndarray) -> np.ndarray:
  """A dropped patch's pixels: uint8 x * 77 >> 8 (about 30% brightness)."""
  return ((np.asarray(pixels, np.uint16) * 77) >> 8).astype(np.uint8)


def cell_bounds(size: tuple[int, int], grid: tuple[int, int]) -> list[tuple[int, int, int, int]]:
  """(y0, y1, x0, x1) of each token's cell, raster order, on a frame of `size` (H, W) split into `grid`
  (gh, gw) cells (edges rounded to whole pixels)."""
  (h, w), (gh, gw) = size, grid
  if gh < 1 or gw < 1 or gh > h or gw > w:
    raise ValueError(f"A token grid of {gh}x{gw} cells does not fit frames of {h}x{w} pixels.")
  ys = np.round(np.linspace(0, h, gh + 1)).astype(int)
  xs = np.round(np.linspace(0, w, gw + 1)).astype(int)
  return [(ys[i], ys[i + 1], xs[j], xs[j + 1]) for i in range(gh) for j in range(gw)]


def token_grid(tokens_per_frame: int) -> tuple[int, int]:
  """The square pooled grid (side, side) of `tokens_per_frame` tokens (LLaVA-OneVision pools square grids)."""
  side = math.isqrt(tokens_per_frame)
  if side * side != tokens_per_frame:
    raise ValueError(f"{tokens_per_frame} tokens per frame is not a square grid; pass grid=(gh, gw).")
  return side, side


def default_scale(frame_height: int) -> int:
  """Integer upscaling that shows a frame about `TARGET_FRAME_PIXELS` high (1 for frames at least that high)."""
  return max(1, TARGET_FRAME_PIXELS // max(int(frame_height), 1))


def frame_origins(num_frames: int, size: tuple[int, int], scale: int = 1, cols: int = DEFAULT_COLS,
                  pad: int = DEFAULT_PAD) -> tuple[tuple[int, int], list[tuple[int, int]]]:
  """((canvas height, canvas width), top-left (y, x) of each frame) of the overlay grid."""
  h, w = size[0] * scale, size[1] * scale
  cols = max(1, min(cols, num_frames))
  rows = -(-num_frames // cols)
  origins = [(pad + (t // cols) * (h + pad), pad + (t % cols) * (w + pad)) for t in range(num_frames)]
  return (pad + rows * (h + pad), pad + cols * (w + pad)), origins


def _check(frames: np.ndarray, kept: np.ndarray, merged, grid) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise ValueError(f"Expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}.")
  t = frames.shape[0]
  kept = np.asarray(kept, bool)
  if kept.ndim == 1:
    if kept.size % t:
      raise ValueError(f"{kept.size} keep flags do not split evenly over {t} frames.")
    kept = kept.reshape(t, -1)
  if kept.ndim != 2 or kept.shape[0] != t:
    raise ValueError(f"Expected keep flags [T={t}, P] or [T * P], got shape {kept.shape}.")
  merged = np.zeros_like(kept) if merged is None else np.asarray(merged, bool).reshape(kept.shape)
  grid = tuple(grid) if grid is not None else token_grid(kept.shape[1])
  if grid[0] * grid[1] != kept.shape[1]:
    raise ValueError(f"grid {grid} has {grid[0] * grid[1]} cells but frames have {kept.shape[1]} tokens.")
  return kept, merged, grid


def overlay_image(frames, kept, merged=None, grid: tuple[int, int] | None = None, scale: int | None = None,
                  cols: int = DEFAULT_COLS, pad: int = DEFAULT_PAD, outline: int | None = None) -> np.ndarray:
  """uint8 [H', W', 3]: `frames` (uint8 [T, H, W, 3], the model-sized sampled frames) in a grid, each
  token's cell kept as is, dimmed if not `kept` (bool [T, P] or [T * P]), outlined if `merged`.

  `grid`: the (gh, gw) token grid per frame (default: square); `scale`: integer upscaling (default:
  `default_scale`); `outline`:
  ring width of merged cells in output pixels (default: max(1, scale))."""
  kept, merged, grid = _check(frames, kept, merged, grid)
  frames = np.asarray(frames)
  scale = default_scale(frames.shape[1]) if scale is None else scale
  if scale < 1 or int(scale) != scale:
    raise ValueError(f"scale={scale} must be a positive integer.")
  t, h, w, _ = frames.shape
  (ch, cw), origins = frame_origins(t, (h, w), scale, cols, pad)
  canvas = np.full((ch, cw, 3), BACKGROUND, np.uint8)
  ring = max(1, scale) if outline is None else outline
  cells = cell_bounds((h, w), grid)
  for f in range(t):
    big = np.repeat(np.repeat(frames[f], scale, axis=0), scale, axis=1)
    for c, (y0, y1, x0, x1) in enumerate(cells):
      ys, xs = slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)
      if not kept[f, c]:
        big[ys, xs] = dim(big[ys, xs])
      elif merged[f, c]:
        patch = big[ys, xs]
        patch[:ring], patch[-ring:], patch[:, :ring], patch[:, -ring:] = (MERGED_COLOR,) * 4
    oy, ox = origins[f]
    canvas[oy:oy + h * scale, ox:ox + w * scale] = big
  return canvas


def overlay_figure(frames, kept, merged=None, grid: tuple[int, int] | None = None, cols: int = DEFAULT_COLS,
                   title: str | None = None, frame_size_in: float = 1.6):
  """A matplotlib figure of the overlay: one panel per frame titled with its kept count (inline in notebooks)."""
  import matplotlib.pyplot as plt
  kept, merged, grid = _check(frames, kept, merged, grid)
  frames = np.asarray(frames)
  t = frames.shape[0]
  cols = max(1, min(cols, t))
  rows = -(-t // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(frame_size_in * cols, frame_size_in * rows + (0.4 if title else 0)),
                           squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for f in range(t):
    ax = axes[f // cols, f % cols]
    ax.imshow(overlay_image(frames[f:f + 1], kept[f:f + 1], merged[f:f + 1], grid, scale=1, pad=0),
              interpolation="nearest")
    ax.set_title(f"frame {f}: {int(kept[f].sum())}/{kept.shape[1]}", fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
