"""A minimal PNG writer (numpy + zlib), for previews without an imaging library."""
from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(rgb: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [H, W, 3] image."""
  rgb = np.ascontiguousarray(rgb, np.uint8)
  h, w, c = rgb.shape
  if c != 3:
    raise ValueError(f"Expected [H, W, 3], got {rgb.shape}.")
  raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

  header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_png(path: str, rgb: np.ndarray) -> None:
  """Write a uint8 [H, W, 3] image to `path`."""
  with open(path, "wb") as f:
    f.write(encode_png(rgb))
