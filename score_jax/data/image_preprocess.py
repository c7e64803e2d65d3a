"""LLaVA-OneVision frame preprocessing: resize to the vision tower's square input, rescale, normalise.

The reference video path (LLaVA-NeXT / lmms-eval with the SigLIP image processor) resizes every frame
to `image_size` x `image_size` (no aspect-preserving crop) with PIL's bicubic filter on uint8 RGB,
multiplies by 1/255 and normalises with the processor's mean/std (SigLIP: 0.5/0.5). The settings
are read from the checkpoint folder: `video_preprocessor_config.json`, else
`preprocessor_config.json` (`image_mean`, `image_std`, `rescale_factor`, `resample`); the size is
the vision tower's `image_size` from `config.json` (the position embeddings fix it). Missing files or
keys fall back to the SigLIP defaults. Normalisation is `score_jax.models.preprocess.normalize_frames`.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
from absl import logging

from score_jax.models.preprocess import SIGLIP_MEAN, SIGLIP_STD, normalize_frames

PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class PreprocessError(ValueError):
  """Preprocessing settings that cannot be used."""


@dataclasses.dataclass(frozen=True)
class PreprocessSettings:
  image_size: int
  mean: tuple[float, float, float] = SIGLIP_MEAN
  std: tuple[float, float, float] = SIGLIP_STD
  resample: str = "bicubic"
  source: str = "defaults"   # which file the values came from (not part of the fingerprint)

  def __post_init__(self):
    if self.image_size < 1:
      raise PreprocessError(f"image_size={self.image_size} must be positive.")
    if self.resample not in RESAMPLE_NAMES.values():
      raise PreprocessError(f"resample={self.resample!r}; expected one of {sorted(RESAMPLE_NAMES.values())}.")
    if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
      raise PreprocessError(f"mean={self.mean} / std={self.std} must be 3 values each, std > 0.")

  def fingerprint(self) -> dict:
    """The settings that change the model's input (stored in the feature cache's manifest)."""
    return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std),
            "resample": self.resample, "rescale": "1/255"}

  @classmethod
  def from_folder(cls, folder: str) -> "PreprocessSettings":
    """The checkpoint folder's processor settings at its vision tower's image size."""
    with open(os.path.join(folder, "config.json")) as f:
      raw = json.load(f)
    image_size = int(raw.get("vision_config", raw).get("image_size", 384))
    for name in PROCESSOR_FILES:
      path = os.path.join(folder, name)
      if os.path.exists(path):
        with open(path) as f:
          try:
            proc = json.load(f)
          except json.JSONDecodeError as e:
            raise PreprocessError(f"{path} is not valid JSON ({e}).") from e
        return cls._from_processor(proc, image_size, path)
    return cls(image_size)

  @classmethod
  def _from_processor(cls, proc: dict, image_size: int, path: str) -> "PreprocessSettings":
    rescale = proc.get("rescale_factor", 1 / 255)
    if proc.get("do_rescale", True) and not np.isclose(rescale, 1 / 255):
      raise PreprocessError(f"{path}: rescale_factor={rescale} is not supported (only 1/255).")
    size = proc.get("size") or {}
    want = size.get("height") or size.get("shortest_edge") if isinstance(size, dict) else size
    if want and int(want) != image_size:
      logging.warning("%s: size %s differs from the vision tower's image_size %d; frames are resized to %d "
                      "(the vision tower's position embeddings need it).", path, size, image_size, image_size)
    mean, std = SIGLIP_MEAN, SIGLIP_STD
    if proc.get("do_normalize", True):
      mean = tuple(float(x) for x in proc.get("image_mean", SIGLIP_MEAN))
      std = tuple(float(x) for x in proc.get("image_std", SIGLIP_STD))
    else:
      mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = proc.get("resample", 3)
    resample = RESAMPLE_NAMES.get(resample, resample) if isinstance(resample, int) else str(resample)
    return cls(image_size, mean, std, resample, source=path)


def resize_frames(frames: np.ndarray, size: int, resample: str = "bicubic") -> np.ndarray:
  """uint8 [T, H, W, 3] -> uint8 [T, size, size, 3] with PIL (the HF processors' resampling)."""
  from PIL import Image
  frames = np.asarray(frames)
  if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
    raise PreprocessError(f"Expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}.")
  if frames.shape[1:3] == (size, size):
    return frames
  mode = getattr(Image.Resampling, resample.upper())
  return np.stack([np.asarray(Image.fromarray(f).resize((size, size), mode)) for f in frames])


def preprocess_frames(frames: np.ndarray, settings: PreprocessSettings) -> np.ndarray:
  """uint8 [T, H, W, 3] -> normalised float32 [T, S, S, 3], the vision tower's input."""
  return normalize(resize_frames(frames, settings.image_size, settings.resample), settings)


def normalize(frames: np.ndarray, settings: PreprocessSettings) -> np.ndarray:
  """Resized uint8 [..., S, S, 3] -> float32 (x / 255 - mean) / std."""
  return normalize_frames(frames, settings.mean, settings.std)
