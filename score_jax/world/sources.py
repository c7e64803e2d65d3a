"""grain data source of the generated world: item i is a pure function of (cfg.seed, split, kind, start + i).

Train and held-out items draw from disjoint seed streams; with `lossy` an item's frames pass through a
real H.264 round trip drawn per item (`lossy_video`), the scene and question unchanged. Items are
dicts of numpy arrays so that grain's batching stacks them; text is stored as fixed-width numpy
unicode (`question` [B], `options` [B, 4], `question_type` [B]), which
`score_jax.data.pipeline.batch_text` turns back into Python strings.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from score_jax.world.generator import WorldConfig, generate_video_sample
from score_jax.world.lossy_video import LossySettings
from score_jax.world.pseudo_video import generate_pseudo_video_sample

SPLITS: dict[str, int] = {"train": 0, "heldout": 1}
KINDS: dict[str, int] = {"video": 0, "pseudo": 1}
QUESTION_WIDTH = 64
OPTION_WIDTH = 16
TYPE_WIDTH = 16


def _fixed(text: Any, width: int) -> np.ndarray:
  """Text as a fixed-width unicode array (so every item, and thus every batch, has the same dtype)."""
  arr = np.asarray(text, dtype=str)
  if arr.dtype.itemsize // 4 > width:
    raise ValueError(f"Text {text!r} is longer than {width} characters.")
  return arr.astype(f"<U{width}")


class WorldSource:
  """Random-access source of world samples (`grain.sources.RandomAccessDataSource` protocol).

  Items: frames uint8 [T, H, W, 3], question <U64 [], options <U16 [4], answer int32 [],
  question_type <U16 [], relevant bool [T, H, W], scene_ids int32 [T], sample_index int64 [].
  """

  def __init__(self, cfg: WorldConfig | None = None, kind: str = "video", split: str = "train",
               size: int = 10_000, pseudo_video_mode: str = "slideshow", lossy: LossySettings | None = None,
               start: int = 0):
    if kind not in KINDS or split not in SPLITS:
      raise ValueError(f"kind must be in {list(KINDS)} and split in {list(SPLITS)}, got {kind!r}, {split!r}.")
    if start < 0:
      raise ValueError(f"start={start} must be >= 0.")
    self.cfg = cfg or WorldConfig()
    self.kind, self.split, self.size, self.pseudo_video_mode = kind, split, int(size), pseudo_video_mode
    self.lossy, self.start = lossy, int(start)

  def __len__(self) -> int:
    return self.size

  def rng(self, index: int) -> np.random.Generator:
    """The generator of item `index`: seeded by (cfg.seed, split, kind, index)."""
    return np.random.default_rng([self.cfg.seed, SPLITS[self.split], KINDS[self.kind], index])

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if not 0 <= index < self.size:
      raise IndexError(f"Index {index} out of range for a source of size {self.size}.")
    world_index = self.start + index
    rng = self.rng(world_index)
    if self.kind == "video":
      s = generate_video_sample(self.cfg, rng)
    else:
      s = generate_pseudo_video_sample(self.cfg, rng, self.pseudo_video_mode)
    frames = s["frames"]
    if self.lossy is not None:  # its own RNG stream: the same scene, question and answer as the clean item
      frames = self.lossy.apply(frames, np.random.default_rng([self.cfg.seed, SPLITS[self.split],
                                                               KINDS[self.kind], world_index, 1]))
    return dict(frames=frames, question=_fixed(s["question"], QUESTION_WIDTH),
                options=_fixed(s["options"], OPTION_WIDTH), answer=np.int32(s["answer"]),
                question_type=_fixed(s["question_type"], TYPE_WIDTH), relevant=s["relevant"],
                scene_ids=s["scene_ids"], sample_index=np.int64(world_index))

  def __repr__(self) -> str:
    return (f"WorldSource(cfg={self.cfg!r}, kind={self.kind!r}, split={self.split!r}, size={self.size}, "
            f"pseudo_video_mode={self.pseudo_video_mode!r}, lossy={self.lossy!r}, start={self.start})")
