"""Image preprocessing shared by every LLaVA-OneVision input: uint8 RGB -> SigLIP-normalised floats."""
from __future__ import annotations

import numpy as np

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def normalize_frames(frames: np.ndarray, mean=SIGLIP_MEAN, std=SIGLIP_STD) -> np.ndarray:
  """uint8 [..., H, W, 3] -> float32 (x / 255 - mean) / std, as the LLaVA-OneVision processor does."""
  x = np.asarray(frames, np.float32) / 255.0
  return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
