"""Video decoding with PyAV: N frames sampled uniformly, as LLaVA-OneVision's evaluation code does.

The reference (lmms-eval's `LlavaOneVision.load_video` in `lmms_eval/models/simple/llava_onevision.py`
@75571cfe, LLaVA-NeXT's `process_video_with_decord`) takes
`np.linspace(0, total_frames - 1, N, dtype=int)` frame indices for every video length: a video with
fewer frames than N repeats frames where the rounded-down indices coincide (20 frames sampled at 32:
0, 0, 1, 1, 2, 3, 3, ...), it is not dropped. With a window [start, end] (seconds) the same linspace
runs over the frames whose timestamp i / fps lies in the window.

A frame's index is its presentation time times the stream's average frame rate (exact for
constant-frame-rate video, the common case); for each wanted index the first decoded frame at or
after it is taken. Far-apart indices are reached by seeking to the previous keyframe, so 32 frames
of an hour-long video do not decode the whole file.

Every failure raises `VideoDecodeError` (or its subclasses) naming the file: a missing file, a file
FFmpeg cannot open, a stream that ends or breaks before a wanted frame (truncated or corrupt), and
a video or window holding no frame at all (`NoFramesError`). `reason` is the
`score_jax.data.jsonl_format` reason code, so callers can count skipped samples by cause. (lmms-eval
logs a video that fails to load and answers from the text alone; here it is a counted skip.)
"""
from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from score_jax.data import jsonl_format as jf

SEEK_GAP_FRAMES = 250  # decode forward through smaller gaps; seek to a keyframe across larger ones


class VideoDecodeError(RuntimeError):
  """A video that cannot be decoded as asked; the message names the file."""
  reason = jf.UNREADABLE_VIDEO

  def __init__(self, path: str, message: str):
    super().__init__(f"{path}: {message}")
    self.path = path


class MissingVideoError(VideoDecodeError):
  reason = jf.MISSING_VIDEO


class TruncatedVideoError(VideoDecodeError):
  reason = jf.TRUNCATED_VIDEO


class NoFramesError(VideoDecodeError):
  reason = jf.NO_FRAMES


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  num_frames: int   # from the container header (or duration x fps when the header has no count)
  fps: float
  width: int
  height: int


def _open(path: str):
  import av
  if not os.path.isfile(path):
    raise MissingVideoError(path, "no such video file")
  try:
    container = av.open(path)
  except (av.FFmpegError, OSError, ValueError) as e:
    raise VideoDecodeError(path, f"cannot open the video (unreadable or not a video file: {e})") from e
  if not container.streams.video:
    container.close()
    raise VideoDecodeError(path, "the file has no video stream")
  return container


def _info(path: str, stream, container) -> VideoInfo:
  rate = stream.average_rate or stream.guessed_rate or stream.base_rate
  if not rate or float(rate) <= 0:
    raise VideoDecodeError(path, "the video stream has no frame rate")
  fps = float(rate)
  n = int(stream.frames or 0)
  if n <= 0:
    if stream.duration is not None and stream.time_base is not None:
      seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
      seconds = container.duration / 1e6
    else:
      raise VideoDecodeError(path, "the container gives neither a frame count nor a duration")
    n = int(round(seconds * fps))
  return VideoInfo(n, fps, stream.codec_context.width, stream.codec_context.height)


def probe(path: str) -> VideoInfo:
  """Frame count, frame rate and size from the container header (nothing decoded)."""
  with _open(path) as c:
    return _info(path, c.streams.video[0], c)


def sample_indices(info: VideoInfo, num_frames: int, start: float | None = None, end: float | None = None,
                   path: str = "") -> np.ndarray:
  """`num_frames` uniformly spaced frame indices (reference linspace), over the video or a window.

  Fewer frames than `num_frames` repeat indices as the reference's rounding does; a video or window
  with no frame raises `NoFramesError`.
  """
  if num_frames < 1:
    raise ValueError(f"num_frames={num_frames} must be >= 1.")
  first, last = 0, info.num_frames - 1
  if start is not None:
    first = max(first, int(math.ceil(start * info.fps - 1e-6)))
  if end is not None:
    last = min(last, int(math.floor(end * info.fps + 1e-6)))
  if last < first:
    where = "" if start is None and end is None else f" in the window [{start}, {end}] s"
    raise NoFramesError(path, f"no frames{where} (video: {info.num_frames} frames at {info.fps:g} fps)")
  return first + np.linspace(0, last - first, num_frames, dtype=int)


def _frame_index(frame, stream, fps: float, start_pts: int, counter: int) -> int:
  if frame.pts is None or stream.time_base is None:
    return counter
  return int(round(float((frame.pts - start_pts) * stream.time_base) * fps))


def read_frames(path: str, indices, info: VideoInfo | None = None) -> np.ndarray:
  """Decodes the frames at `indices` (sorted or not, repeats allowed) -> uint8 RGB [len, H, W, 3]."""
  import av
  indices = np.asarray(indices, np.int64)
  got: dict[int, np.ndarray] = {}
  with _open(path) as c:
    stream = c.streams.video[0]
    stream.thread_type = "AUTO"
    info = info or _info(path, stream, c)
    start_pts = stream.start_time or 0
    frames, current, index, counter = None, None, -1, 0
    try:
      for target in sorted(set(indices.tolist())):
        if frames is None or (target - index > SEEK_GAP_FRAMES and stream.time_base is not None):
          if target > SEEK_GAP_FRAMES:
            c.seek(start_pts + int(target / info.fps / stream.time_base), stream=stream, backward=True)
          frames, current = c.decode(stream), None
        while current is None or index < target:
          frame = next(frames, None)
          if frame is None:
            raise TruncatedVideoError(path, f"the stream ended after frame {index} but frame {target} is "
                                            f"needed (the header says {info.num_frames} frames): truncated "
                                            "or corrupt file")
          current, index = frame, _frame_index(frame, stream, info.fps, start_pts, counter)
          counter += 1
        got[target] = current.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
      raise TruncatedVideoError(path, f"decoding failed after frame {index} of {info.num_frames} "
                                      f"(truncated or corrupt file: {e})") from e
  return np.stack([got[i] for i in indices.tolist()])


def decode_video(path: str, num_frames: int, start: float | None = None, end: float | None = None
                 ) -> np.ndarray:
  """`num_frames` uniformly sampled frames of a video (or of its [start, end] window): uint8 [N, H, W, 3]."""
  info = probe(path)
  return read_frames(path, sample_indices(info, num_frames, start, end, path), info)


def write_video(path: str, frames: np.ndarray, fps: float = 8.0, lossless: bool = True,
                faststart: bool = False, gop: int | None = None) -> str:
  """Writes uint8 RGB frames [T, H, W, 3] as an H.264 mp4 (tests and benchmarks make real files with it).

  `lossless` uses libx264rgb at crf 0 (decodes back bit-exactly), else libx264 yuv420p at its
  default quality, like most real videos. `faststart` puts the index first (a truncated copy then
  still opens, and fails while decoding); `gop` sets the keyframe interval.
  """
  import av
  from fractions import Fraction
  frames = np.asarray(frames, np.uint8)
  if frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"Expected frames [T, H, W, 3], got {frames.shape}.")
  h, w = frames.shape[1:3]
  if not lossless and (h % 2 or w % 2):
    raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}.")
  options = {"movflags": "faststart"} if faststart else {}
  with av.open(path, "w", options=options) as c:
    stream = c.add_stream("libx264rgb" if lossless else "libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = w, h
    stream.pix_fmt = "rgb24" if lossless else "yuv420p"
    stream.options = {"crf": "0", "preset": "ultrafast"} if lossless else {"preset": "veryfast"}
    if gop:
      stream.options = dict(stream.options, g=str(gop), keyint_min=str(gop))
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
        c.mux(packet)
    for packet in stream.encode():
      c.mux(packet)
  return path
