"""Feature cache of an image QA set: each image's visual tokens stored once, pseudo-videos assembled on read.

The LLaVA-OneVision vision side encodes frames independently (`LlavaOnevision.encode_video` runs the
tower, projector and per-frame pooling on the B*T frames alike), so a still image gives the same
tokens [1, P, d] in every frame that shows it. `build_image_cache` stores them once per distinct
image, with `feature_cache`'s layout, manifest, checksums, staleness checks and resumption (entries
keyed by the image's path and content fingerprint; the manifest's "video" names the image), and
`CachedImagePseudoVideoSource` assembles item i's [T, P, d] from them with the segment plan of
`image_pseudo_video`: the same items as the decoding `ImagePseudoVideoSource`, "visual" for "frames".
"""
from __future__ import annotations

import os

import numpy as np

from score_jax.data import feature_cache as fc
from score_jax.data.image_pseudo_video import ImageReadError, assemble, image_frame, image_pool, segment_plan
from score_jax.data.image_qa_format import read_image_jsonl

IMAGE_SAMPLING = "one still image per entry (PIL, RGB); pseudo-video frames assembled on read; v1"


def image_cache_settings(settings: dict) -> dict:
  """An image cache's manifest settings from `feature_cache.cache_settings`'s: one frame per entry."""
  return dict(settings, num_frames=1, frame_sampling=IMAGE_SAMPLING)


def build_image_cache(dataset_path: str, cache_dir: str, encoder: fc.VisionEncoder, strict: bool = False,
                      verify: bool = True, batch_size: int = 4, decode_threads: int = 2,
                      flush_every: int = 256) -> fc.CacheReport:
  """Creates or updates the cache of an image QA JSONL file (`image_qa_format`); as `fc.build_cache`,
  with images that fail to read skipped (`unreadable_image`) like videos that fail to decode."""
  ds = read_image_jsonl(dataset_path, strict=strict)
  root = os.path.dirname(ds.path)
  return fc.build_entries(ds, cache_dir, encoder, image_cache_settings(encoder.settings(1)),
                          lambda s, hashes: fc.file_entry_spec(s.image, root, file_hashes=hashes),
                          lambda spec: image_frame(spec.video, encoder.preprocess), ImageReadError,
                          verify=verify, batch_size=batch_size, decode_threads=decode_threads,
                          flush_every=flush_every)


class CachedImagePseudoVideoSource:
  """grain random-access source of image pseudo-videos over an image feature cache.

  Items as `feature_cache.CachedFeatureSource`'s: visual [T, P, d] (stored dtype), question, options,
  num_options, answer, id. Opening and reading check the cache as `CachedFeatureSource` does
  (`settings`/`dataset_path` must match; every record's checksum; `CacheError` naming the record).
  """

  def __init__(self, cache_dir: str, num_frames: int, seed: int = 0, settings: dict | None = None,
               dataset_path: str | None = None, max_options: int | None = None, verify_reads: bool = True):
    self.cache = fc.CachedFeatureSource(cache_dir, settings, dataset_path, max_options, verify_reads)
    self.records, self.skipped, self.num_dropped = self.cache.records, self.cache.skipped, self.cache.num_dropped
    self.images, self.image_of = image_pool([r["entry"] for r in self.records])
    self.num_frames, self.seed = num_frames, seed

  def __len__(self) -> int:
    return len(self.records)

  def plan(self, index: int) -> np.ndarray:
    """int32 [T]: the index into `self.images` (entry keys) of each frame of item `index`."""
    return segment_plan(self.seed, int(index), int(self.image_of[index]), len(self.images), self.num_frames)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    plan = self.plan(index)
    visual = assemble(plan, lambda k: self.cache.visual(self.images[k]))  # each image's tokens [1, P, d]
    return dict(self.cache.text.item(self.records[index]), visual=visual)

  def __repr__(self) -> str:
    return (f"CachedImagePseudoVideoSource({self.cache.cache_dir!r}, {len(self)} samples, {len(self.images)} "
            f"images, {self.num_frames} frames)")
