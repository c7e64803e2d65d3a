"""PNG files of the pictures: exact images and matplotlib figures, never replacing a file unless asked."""
from __future__ import annotations

import os

import numpy as np


def _check_target(path: str, overwrite: bool) -> None:
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} already exists; pass another path (nothing was overwritten).")
  if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
    raise FileNotFoundError(f"The folder of {path} does not exist.")


def save_png(path: str, image: np.ndarray, overwrite: bool = False) -> str:
  """Writes uint8 [H, W, 3] `image` as a PNG, pixel for pixel."""
  from PIL import Image
  _check_target(path, overwrite)
  Image.fromarray(np.asarray(image, np.uint8), "RGB").save(path, format="PNG")
  return path


def save_figure(fig, path: str, overwrite: bool = False, dpi: int = 110) -> str:
  """Saves a matplotlib figure as PNG and closes it."""
  import matplotlib.pyplot as plt
  try:
    _check_target(path, overwrite)
    fig.savefig(path, dpi=dpi)
  finally:
    plt.close(fig)
  return path
