"""Stage-1 pseudo-videos from image QA data: the question's image held still, with abrupt cuts to others.

Sample i of a set of image QA samples becomes a T-frame video: `segment_plan` splits the T frames
into 1 + n consecutive segments (`pseudo_video.segment_lengths`, each >= 2 frames; n drawn from
FILLERS), one of them (drawn) shows the question's image and each other one a distinct other image
of the set, everything drawn from np.random.default_rng([seed, i]): item i is a pure function of
(seed, i, the set). The set's images are the distinct images of its samples in first-appearance
order (`image_pool`). Frames are prepared as `feature_cache.VideoSampleSource` prepares video frames:
RGB uint8 resized to the vision tower's square input, normalised by `feature_cache.model_batch`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from score_jax.data import feature_cache as fc
from score_jax.data import jsonl_format as jf
from score_jax.data.image_preprocess import PreprocessSettings, resize_frames
from score_jax.data.image_qa_format import UNREADABLE_IMAGE, ImageSample
from score_jax.world.pseudo_video import segment_lengths

FILLERS = (1, 2)  # inclusive range of other images cut to in each pseudo-video


class ImageReadError(ValueError):
  """An image file PIL cannot read; `reason` is a `jsonl_format`-style reason code."""

  def __init__(self, path: str, message: str, reason: str = UNREADABLE_IMAGE):
    super().__init__(f"{path}: {message}")
    self.path, self.reason = path, reason


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] RGB pixels of an image file (any mode PIL converts); `ImageReadError` naming it."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"), np.uint8)
  except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
    raise ImageReadError(path, f"cannot be read as an image ({e})") from e


def probe_image(path: str) -> None:
  """Cheap check that PIL identifies the file and its data verifies; `ImageReadError` otherwise."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.verify()
  except (OSError, ValueError, SyntaxError) as e:
    raise ImageReadError(path, f"cannot be read as an image ({e})") from e


def image_frame(path: str, preprocess: PreprocessSettings) -> np.ndarray:
  """One image as a resized uint8 frame [1, S, S, 3] (`resize_frames`, as decoded video frames)."""
  return resize_frames(read_image(path)[None], preprocess.image_size, preprocess.resample)


def image_pool(keys: Sequence[str]) -> tuple[list[str], np.ndarray]:
  """(the distinct keys in first-appearance order, int32 [N] index of each sample's key among them)."""
  pool = list(dict.fromkeys(keys))
  where = {k: i for i, k in enumerate(pool)}
  return pool, np.asarray([where[k] for k in keys], np.int32)


def segment_plan(seed: int, index: int, image: int, num_images: int, frames: int,
                 fillers: tuple[int, int] = FILLERS) -> np.ndarray:
  """int32 [frames]: the pool index of each frame's image in sample `index`'s pseudo-video.

  `image` (the question's) fills one segment, distinct other images of the `num_images` the others;
  with no other image (or too few frames for 2 segments) the question's image fills every frame.
  """
  rng = np.random.default_rng([seed, index])
  others = np.asarray([k for k in range(num_images) if k != image], np.int32)
  n = min(int(rng.integers(fillers[0], fillers[1] + 1)), len(others))
  lengths = segment_lengths(rng, frames, 1 + n)
  target = int(rng.integers(len(lengths)))
  chosen = list(rng.choice(others, size=len(lengths) - 1, replace=False)) if len(lengths) > 1 else []
  shown = chosen[:target] + [image] + chosen[target:]
  return np.repeat(np.asarray(shown, np.int32), lengths)


def assemble(plan: np.ndarray, read) -> np.ndarray:
  """The frames of a pseudo-video: `read(k)` ([1, ...]) once per distinct pool index in `plan`,
  concatenated in the plan's frame order -> [T, ...]."""
  shown = {int(k): read(int(k)) for k in np.unique(plan)}
  return np.concatenate([shown[int(k)] for k in plan])


class ImagePseudoVideoSource:
  """grain random-access source of image pseudo-videos, read and resized on every access (uncached).

  Items exactly as `feature_cache.VideoSampleSource`'s: frames uint8 [T, S, S, 3] (resized, not
  normalised), question, options, num_options, answer, id. An image that fails to read raises
  `ImageReadError` naming it. Samples with more than `max_options` options are left out (warned).
  """

  def __init__(self, samples: Sequence[ImageSample], num_frames: int, preprocess: PreprocessSettings,
               seed: int = 0, max_options: int | None = None):
    records = [fc.cache_record(s, "") for s in samples]
    keep = fc.keep_answerable(records, max_options, "decoded images")
    self.samples, self.records = [samples[i] for i in keep], [records[i] for i in keep]
    self.images, self.image_of = image_pool([s.image for s in self.samples])
    self.num_frames, self.preprocess, self.seed = num_frames, preprocess, seed
    self.text = fc.TextItems(self.records, max_options)

  def __len__(self) -> int:
    return len(self.samples)

  def plan(self, index: int) -> np.ndarray:
    """int32 [T]: the index into `self.images` of each frame of item `index`."""
    return segment_plan(self.seed, int(index), int(self.image_of[index]), len(self.images), self.num_frames)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    plan = self.plan(index)
    frames = assemble(plan, lambda k: image_frame(self.images[k], self.preprocess))
    return dict(self.text.item(self.records[index]), frames=frames)

  def __repr__(self) -> str:
    return f"ImagePseudoVideoSource({len(self)} samples, {len(self.images)} images, {self.num_frames} frames)"


def probe_images(samples: Sequence[ImageSample], problems: jf.ProblemLog) -> list[ImageSample]:
  """The samples whose image opens (`probe_image`); the others are skipped into `problems`."""
  out, errors = [], {}  # image path -> its ImageReadError, None if it opens
  for s in samples:
    if s.image not in errors:
      try:
        probe_image(s.image)
        errors[s.image] = None
      except ImageReadError as e:
        errors[s.image] = e
    err = errors[s.image]
    if err is not None:
      problems.add(jf.SampleProblem(s.source, s.id, err.reason, str(err)))
      continue
    out.append(s)
  return out
