"""Lazy, memory-mapped reading of (possibly sharded) safetensors checkpoints into numpy.

`safetensors`' own numpy reader cannot return bfloat16 (the dtype of most released checkpoints), so
this reads the documented format directly: an 8-byte little-endian header length, a JSON header with
each tensor's dtype, shape and byte range, then the raw bytes. Tensors are `np.memmap` views: a
slice read from them touches only the bytes it needs, so a sharded load never holds a whole
checkpoint in host memory.
"""
from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
    "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2,
}
INDEX_FILE = "model.safetensors.index.json"


class CheckpointError(ValueError):
  """A checkpoint folder or file that cannot be read as expected."""


def read_header(path: str) -> tuple[dict, int]:
  """Returns (tensor table, byte offset of the data section) of one .safetensors file."""
  try:
    with open(path, "rb") as f:
      raw = f.read(8)
      if len(raw) != 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file.")
      (n,) = struct.unpack("<Q", raw)
      if n > os.path.getsize(path) - 8:
        raise CheckpointError(f"{path}: header length {n} is past the end of the file (truncated?).")
      header = json.loads(f.read(n))
  except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: cannot read safetensors header ({e}).") from e
  header.pop("__metadata__", None)
  return header, 8 + n


class SafetensorsFolder:
  """All tensors of a checkpoint folder (single file or sharded with an index), by name."""

  def __init__(self, folder: str):
    if not os.path.isdir(folder):
      raise CheckpointError(f"Checkpoint folder {folder!r} does not exist.")
    index = os.path.join(folder, INDEX_FILE)
    if os.path.exists(index):
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    else:
      files = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
    if not files:
      raise CheckpointError(f"No *.safetensors files in checkpoint folder {folder!r}.")
    self.folder = folder
    self._where: dict[str, tuple[str, dict, int]] = {}
    for name in files:
      path = os.path.join(folder, name)
      if not os.path.exists(path):
        raise CheckpointError(f"{index} names {name!r}, which is missing from {folder!r}.")
      header, start = read_header(path)
      size = os.path.getsize(path)
      for key, meta in header.items():
        end = start + meta["data_offsets"][1]
        if end > size:
          raise CheckpointError(f"{path}: tensor {key!r} ends at byte {end} but the file has {size} "
                                f"bytes (truncated download?).")
        self._where[key] = (path, meta, start)

  def __contains__(self, key: str) -> bool:
    return key in self._where

  def keys(self) -> list[str]:
    return list(self._where)

  def file_of(self, key: str) -> str:
    return self._where[key][0] if key in self._where else self.folder

  def shape(self, key: str) -> tuple[int, ...]:
    return tuple(self._where[key][1]["shape"])

  def get(self, key: str) -> np.ndarray:
    """Memory-mapped, read-only view of one tensor."""
    if key not in self._where:
      raise CheckpointError(f"Tensor {key!r} is missing from the checkpoint in {self.folder!r}.")
    path, meta, start = self._where[key]
    if meta["dtype"] not in _DTYPES:
      raise CheckpointError(f"{path}: tensor {key!r} has unsupported dtype {meta['dtype']}.")
    dtype = np.dtype(_DTYPES[meta["dtype"]])
    b0, b1 = meta["data_offsets"]
    shape = tuple(meta["shape"])
    if b1 - b0 != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
      raise CheckpointError(f"{path}: tensor {key!r} byte range does not match shape {shape}.")
    if b1 == b0:
      return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=start + b0, shape=shape)


def save_safetensors(tensors: dict[str, np.ndarray], path: str) -> None:
  """Writes numpy arrays (bfloat16 included) as one .safetensors file."""
  names = {np.dtype(v): k for k, v in _DTYPES.items()}
  header, offset, blobs = {}, 0, []
  for key in sorted(tensors):
    arr = np.ascontiguousarray(tensors[key])
    blob = arr.tobytes()
    header[key] = {"dtype": names[arr.dtype], "shape": list(arr.shape),
                   "data_offsets": [offset, offset + len(blob)]}
    offset += len(blob)
    blobs.append(blob)
  raw = json.dumps(header).encode()
  raw += b" " * (-len(raw) % 8)
  with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for blob in blobs:
      f.write(blob)
