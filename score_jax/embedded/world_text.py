"""The embedded world's text side (tokenizer, prompt format) and sample streams for the base model."""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Iterator

import numpy as np

from score_jax.world import generator as world, pseudo_video
from score_jax.world.lossy_video import LossySettings
from score_jax.embedded.batches import encode_samples
from score_jax.models.prompt import PromptEncoder
from score_jax.models.word_tokenizer import build_word_tokenizer

WORLD = world.WorldConfig()
SUFFIX_LEN = 48
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES = ("world/generator.py", "world/scene.py", "world/clutter.py", "world/palette.py", "world/pseudo_video.py",
            "world/oracle.py", "world/lossy_video.py", "embedded/model_config.py", "embedded/sft_batches.py",
            "models/word_tokenizer.py")


def _world_version() -> str:
  """Hash of the generator's sources and of the batch code the base model trains on (`_SOURCES`; the
  training loop itself, `base_model.py`, is not in it): a model trained on another version of the
  world is rebuilt rather than used."""
  h = hashlib.sha256()
  for name in _SOURCES:
    with open(os.path.join(_PACKAGE, name), "rb") as f:
      h.update(f.read())
  return h.hexdigest()[:16]


WORLD_VERSION = _world_version()


@dataclasses.dataclass
class WorldText:
  tokenizer: object
  prompts: PromptEncoder
  suffix_len: int = SUFFIX_LEN

  @classmethod
  def create(cls, answer_format: str = "letter") -> "WorldText":
    tok = build_word_tokenizer(world.vocabulary(WORLD))
    return cls(tok, PromptEncoder(tok, tok.chat_template, answer_format))

  @classmethod
  def from_folder(cls, folder: str, answer_format: str = "letter") -> "WorldText":
    prompts = PromptEncoder.from_folder(folder, answer_format)
    return cls(prompts.tokenizer, prompts)

  def special_ids(self) -> tuple[int, int]:
    return (self.tokenizer.convert_tokens_to_ids("<image>"), self.tokenizer.convert_tokens_to_ids("<video>"))


def world_config(question_types: tuple[str, ...] = ()) -> world.WorldConfig:
  """The embedded world, optionally restricted to some question types."""
  return dataclasses.replace(WORLD, question_types=tuple(question_types)) if question_types else WORLD


def sample(kind: str, rng: np.random.Generator, cfg: world.WorldConfig = WORLD) -> dict:
  if kind == "video":
    return world.generate_video_sample(cfg, rng)
  if kind == "pseudo":
    return pseudo_video.generate_pseudo_video_sample(cfg, rng)
  raise ValueError(f"Unknown sample kind {kind!r}; expected 'video' or 'pseudo'.")


def training_stream(seed: int, pseudo_fraction: float, cfg: world.WorldConfig = WORLD) -> Iterator[dict]:
  rng = np.random.default_rng([0xBA5E, seed, 1])  # no trailing zeros: [s, 1] == [s, 1, 0, 0] in numpy
  while True:
    yield sample("pseudo" if rng.random() < pseudo_fraction else "video", rng, cfg)


def heldout_batches(kind: str, n: int, batch_size: int, text: WorldText, cfg: world.WorldConfig = WORLD,
                    with_types: bool = False, lossy: LossySettings | None = None) -> list[dict]:
  """Encoded held-out batches (with each sample's `question_type` if `with_types`); with `lossy`, the
  same samples' videos after an H.264 round trip drawn from their own RNG stream."""
  rng = np.random.default_rng([0xBA5E, 12345, 2])
  samples = [sample(kind, rng, cfg) for _ in range(n)]
  if lossy is not None:
    codec_rng = np.random.default_rng([0xBA5E, 12345, 4])
    samples = [dict(s, frames=lossy.apply(s["frames"], codec_rng)) for s in samples]
  batches = []
  for i in range(0, n, batch_size):
    b = encode_samples(samples[i:i + batch_size], text.prompts, text.suffix_len)
    if with_types:
      b["question_type"] = [s["question_type"] for s in samples[i:i + batch_size]]
    batches.append(b)
  return batches
