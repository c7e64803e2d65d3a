"""Frames through a real H.264 encode/decode round trip, so generated videos look like users' files.

    frames = h264_round_trip(frames, crf=28, size=96)

PyAV (libx264, yuv420p, single-threaded) encodes the clip in memory at constant quality `crf` and,
optionally, at another frame size (`size` x `size`); the decoded frames are resized back to the input
size (bicubic, as video preprocessors do). Static regions are then no longer bit-identical from frame
to frame, chroma is subsampled, and edges ring: the inter-frame residuals a policy reads carry codec
noise, as they do on real videos.

x264 runs its plain C code ("asm=0"): its SIMD code (AVX-512 here) gave, for ~1 clip in 100 at 48 or
96 pixels, output that depended on what the process had encoded before. The C paths are as fast on
these small clips and give the same pixels on every run and thread count.
"""
from __future__ import annotations

import dataclasses
import io
from fractions import Fraction

import numpy as np


@dataclasses.dataclass(frozen=True)
class LossySettings:
  """Ranges the generated world draws each video's encoding from (seeded by the sample's RNG)."""
  crf: tuple[int, int] = (18, 32)          # inclusive; x264's default is 23
  sizes: tuple[int, ...] = (48, 64, 96)    # encoded frame size (square), resized back afterwards
  fraction: float = 1.0                    # share of the videos that are encoded (the rest stay clean)

  def __post_init__(self):
    if not (0 <= self.crf[0] <= self.crf[1] <= 51) or not self.sizes or min(self.sizes) < 16:
      raise ValueError(f"LossySettings: crf must be a range within [0, 51] and sizes >= 16, got {self}.")
    if not 0.0 <= self.fraction <= 1.0:
      raise ValueError(f"LossySettings: fraction={self.fraction} must be in [0, 1].")

  def draw(self, rng: np.random.Generator) -> tuple[int, int] | None:
    """(crf, size) of one video, or None if it stays clean."""
    crf, size = int(rng.integers(self.crf[0], self.crf[1] + 1)), int(rng.choice(np.asarray(self.sizes)))
    return (crf, size) if rng.random() < self.fraction else None

  def apply(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`frames` after the round trip `draw(rng)` picks, or unchanged if the draw keeps them clean."""
    drawn = self.draw(rng)
    return frames if drawn is None else h264_round_trip(frames, *drawn)


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  from PIL import Image
  h, w = size
  if frames.shape[1:3] == (h, w):
    return frames
  return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in frames])


def h264_round_trip(frames: np.ndarray, crf: int = 23, size: int | None = None, fps: float = 8.0) -> np.ndarray:
  """uint8 [T, H, W, 3] -> the same clip after H.264 yuv420p at `crf` (encoded at `size`x`size` if given)."""
  import av
  frames = np.asarray(frames, np.uint8)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"Expected frames [T, H, W, 3], got {frames.shape}.")
  t, h, w, _ = frames.shape
  eh, ew = (size, size) if size else (h + h % 2, w + w % 2)  # yuv420p needs even sizes
  enc = _resize(frames, (eh, ew))
  buf = io.BytesIO()
  with av.open(buf, "w", format="mp4") as c:
    stream = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
    stream.options = {"crf": str(int(crf)), "preset": "veryfast", "threads": "1", "x264-params": "asm=0"}
    for f in enc:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(packet)
    for packet in stream.encode():
      c.mux(packet)
  buf.seek(0)
  with av.open(buf) as c:
    out = np.stack([fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)])
  if len(out) != t:
    raise RuntimeError(f"H.264 round trip returned {len(out)} frames for {t}.")
  return _resize(out, (h, w))
