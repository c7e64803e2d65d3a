"""grain sources and iterators: determinism by index, disjoint splits, batching of text, checkpoint state."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from score_jax.data.pipeline import batch_text, make_iterator
from score_jax.world.sources import WorldSource
from score_jax.world.generator import WorldConfig


def _digest(item: dict) -> str:
  return hashlib.sha1(item["frames"].tobytes() + str(item["question"]).encode()).hexdigest()


def _assert_batches_equal(a: list[dict], b: list[dict]):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_item_is_a_function_of_index():
  src = WorldSource(kind="video", split="train", size=50)
  a, b = src[7], WorldSource(kind="video", split="train", size=50)[7]
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  _ = src[3]  # access order does not matter
  np.testing.assert_array_equal(src[7]["frames"], a["frames"])
  assert _digest(src[7]) != _digest(src[8])
  assert int(a["sample_index"]) == 7


def test_item_format():
  item = WorldSource(kind="pseudo", size=4)[0]
  assert item["frames"].shape == (8, 64, 64, 3) and item["frames"].dtype == np.uint8
  assert item["relevant"].shape == (8, 64, 64) and item["relevant"].dtype == bool
  assert item["options"].shape == (4,) and item["options"].dtype == np.dtype("<U16")
  assert item["question"].shape == () and item["question"].dtype == np.dtype("<U64")
  assert item["answer"].dtype == np.int32 and 0 <= int(item["answer"]) < 4
  assert item["scene_ids"].shape == (8,)


def test_splits_kinds_and_seeds_are_disjoint():
  n = 40
  train = {_digest(WorldSource(split="train", size=n)[i]) for i in range(n)}
  heldout = {_digest(WorldSource(split="heldout", size=n)[i]) for i in range(n)}
  pseudo = {_digest(WorldSource(kind="pseudo", split="train", size=n)[i]) for i in range(n)}
  other_seed = {_digest(WorldSource(WorldConfig(seed=1), split="train", size=n)[i]) for i in range(n)}
  assert len(train) == len(heldout) == n
  assert not train & heldout and not train & pseudo and not train & other_seed


def test_index_bounds_and_bad_args():
  src = WorldSource(size=3)
  with pytest.raises(IndexError):
    src[3]
  with pytest.raises(ValueError):
    WorldSource(split="test")
  assert "split='train'" in repr(src) and len(src) == 3


def test_batches_and_text():
  src = WorldSource(size=12)
  it = make_iterator(src, batch_size=4, seed=0)
  batch = next(it)
  assert batch["frames"].shape == (4, 8, 64, 64, 3) and batch["options"].shape == (4, 4)
  assert batch["relevant"].shape == (4, 8, 64, 64) and batch["answer"].shape == (4,)
  questions, options = batch_text(batch)
  for i, idx in enumerate(batch["sample_index"]):
    item = src[int(idx)]
    assert questions[i] == str(item["question"]) and options[i] == [str(o) for o in item["options"]]
    np.testing.assert_array_equal(batch["frames"][i], item["frames"])


def test_one_epoch_covers_every_index_once_and_shuffles():
  src = WorldSource(size=10)
  batches = list(make_iterator(src, batch_size=3, seed=1, num_epochs=1, drop_remainder=False))
  order = np.concatenate([b["sample_index"] for b in batches]).tolist()
  assert sorted(order) == list(range(10)) and order != list(range(10))
  plain = list(make_iterator(src, batch_size=5, seed=1, shuffle=False, num_epochs=1))
  assert np.concatenate([b["sample_index"] for b in plain]).tolist() == list(range(10))
  other = list(make_iterator(src, batch_size=3, seed=2, num_epochs=1, drop_remainder=False))
  assert np.concatenate([b["sample_index"] for b in other]).tolist() != order


def test_epochs_are_reshuffled_and_repeat_forever():
  src = WorldSource(size=6)
  it = make_iterator(src, batch_size=6, seed=0)
  first, second, third = (next(it)["sample_index"].tolist() for _ in range(3))
  assert sorted(first) == sorted(second) == sorted(third) == list(range(6))
  assert len({tuple(first), tuple(second), tuple(third)}) > 1


def test_iterator_state_round_trip():
  src = WorldSource(size=9)
  it = make_iterator(src, batch_size=4, seed=3)
  for _ in range(3):  # cross an epoch boundary
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  restored = make_iterator(src, batch_size=4, seed=3)
  restored.set_state(state)
  _assert_batches_equal([next(restored) for _ in range(3)], expected)
  it.set_state(state)  # rewinding the same iterator
  _assert_batches_equal([next(it) for _ in range(3)], expected)
  fresh = make_iterator(src, batch_size=4, seed=3)  # without the restore, batches differ
  assert not np.array_equal(next(fresh)["sample_index"], expected[0]["sample_index"])
