"""grain iterators over any random-access source (`make_iterator`), and helpers for their batches.

Sources: `score_jax.world.sources.WorldSource` (the generated world),
`score_jax.data.feature_cache.CachedFeatureSource` (real videos through the feature cache), ...
"""
from __future__ import annotations

import grain
import numpy as np

class Head:
  """The first `n` items of a random-access source."""

  def __init__(self, source, n: int):
    self.source, self.n = source, min(int(n), len(source))

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, index: int):
    index = int(index)
    if not 0 <= index < self.n:
      raise IndexError(f"Index {index} out of range for a source of size {self.n}.")
    return self.source[index]

  def __repr__(self) -> str:
    return f"Head({self.source!r}, {self.n})"


def make_iterator(source, batch_size: int, seed: int, shuffle: bool = True,
                  num_epochs: int | None = None, drop_remainder: bool = True, num_threads: int = 2,
                  prefetch_buffer_size: int = 16, keep_fn=None, shard: tuple[int, int] = (0, 1)
                  ) -> grain.DatasetIterator:
  """A checkpointable iterator of batches (dicts of stacked arrays with leading dim `batch_size`) over
  any random-access source (`WorldSource`, `feature_cache.CachedFeatureSource`, ...).

  Shuffles per epoch (reseeded each epoch), repeats `num_epochs` times (None: forever), drops items
  for which `keep_fn(item)` is False (if given), batches, and reads with `num_threads` threads.
  Save/restore with `it.get_state()` / `it.set_state(state)`.

  `shard=(index, count)` (`score_jax.data.host_shard`): read only batches index, index + count, ... of the
  stream (with `keep_fn`: its items index, index + count, ..., before filtering); (0, 1) reads everything.
  """
  index, count = shard
  if not 0 <= index < count:
    raise ValueError(f"shard={shard!r}: expected (index, count) with 0 <= index < count.")
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
  if keep_fn is not None:
    ds = ds[index::count] if count > 1 else ds
    ds = ds.filter(keep_fn).to_iter_dataset(options)
    return iter(ds.batch(batch_size, drop_remainder=drop_remainder))
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  ds = ds[index::count] if count > 1 else ds
  return iter(ds.to_iter_dataset(options))


def batch_text(batch: dict[str, np.ndarray]) -> tuple[list[str], list[list[str]]]:
  """(questions, options) of a batch as Python strings."""
  return [str(q) for q in batch["question"]], [[str(o) for o in row] for row in batch["options"]]
