"""Static top-k selection, per-frame top-k, masks and budget rounding."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.compress.selection import budget, indices_to_mask, per_frame_topk_indices, topk_indices


def test_topk_sorted_by_index():
  scores = np.array([[0.1, 0.9, 0.3, 0.7, 0.8], [5.0, 4.0, 3.0, 2.0, 1.0]], np.float32)
  idx = topk_indices(scores, 3)
  assert idx.dtype == np.int32
  np.testing.assert_array_equal(idx, [[1, 3, 4], [0, 1, 2]])


def test_per_frame_topk():
  scores = np.array([[[0.0, 2.0, 1.0], [9.0, 0.0, 5.0]]], np.float32)  # B=1, T=2, P=3
  idx = per_frame_topk_indices(scores, 2)
  # frame 0 keeps p=1,2 -> 1,2; frame 1 keeps p=0,2 -> 3,5
  np.testing.assert_array_equal(idx, [[1, 2, 3, 5]])


def test_indices_to_mask():
  mask = indices_to_mask(np.array([[0, 3], [1, 2]]), 5)
  np.testing.assert_array_equal(mask, [[1, 0, 0, 1, 0], [0, 1, 1, 0, 0]])
  masked = indices_to_mask(np.array([[2, 0]]), 4, valid=np.array([[True, False]]))
  np.testing.assert_array_equal(masked, [[0, 0, 1, 0]])


def test_budget_rounding():
  assert budget(6272, 0.1) == 627  # 627.2 -> 627
  assert budget(10, 0.25) == 3  # 2.5 rounds half up
  assert budget(10, 0.24) == 2
  assert budget(100, 0.001) == 1  # at least one token
  assert budget(4, 1.5) == 4  # never more than n


def test_jit():
  f = jax.jit(functools.partial(topk_indices, k=2))
  np.testing.assert_array_equal(f(np.array([[3.0, 1.0, 2.0]])), [[0, 2]])


def test_variable_topk_keeps_the_best_count_per_row_under_the_cap():
  from score_jax.compress.selection import expected_count, variable_topk
  scores = jnp.array([[0.1, 5.0, -1.0, 3.0, 4.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
  idx, valid = variable_topk(scores, jnp.array([2, 9]), 3)
  np.testing.assert_array_equal(np.asarray(valid), [[True, True, False], [True, True, True]])
  np.testing.assert_array_equal(np.asarray(idx), [[1, 4, 0], [3, 4, 5]])  # ascending, then padding 0
  logits = jnp.log(jnp.array([[0.5, 0.5, 0.5, 0.5], [0.01, 0.01, 0.01, 0.01]]) /
                   (1 - jnp.array([[0.5, 0.5, 0.5, 0.5], [0.01, 0.01, 0.01, 0.01]])))
  np.testing.assert_array_equal(np.asarray(expected_count(logits, 3)), [2, 1])  # round(2.0); at least 1


def test_tail_count_keeps_the_fewest_tokens_that_leave_at_most_the_tail():
  from score_jax.compress.selection import tail_count
  logits = jnp.log(jnp.array([[0.05, 0.5, 0.15, 0.3], [0.25, 0.25, 0.25, 0.25]]))
  np.testing.assert_array_equal(np.asarray(tail_count(logits, 0.1, 4)), [3, 4])  # leaves 0.05; flat: all
  np.testing.assert_array_equal(np.asarray(tail_count(logits, 0.25, 4)), [2, 3])  # leaves 0.2; 0.25
  np.testing.assert_array_equal(np.asarray(tail_count(logits, 0.1, 2)), [2, 2])  # the cap
  peaked = jnp.array([[0.0, -60.0, -120.0, -180.0]])  # tails far below float32 precision of 1 - mass
  np.testing.assert_array_equal(np.asarray(tail_count(peaked, 1e-30, 4)), [2])
  np.testing.assert_array_equal(np.asarray(tail_count(peaked, 1e-60, 4)), [3])
  np.testing.assert_array_equal(np.asarray(tail_count(logits, 0.25, 4, k_min=3)), [3, 3])  # the floor
  with pytest.raises(ValueError, match="k_min"):
    tail_count(logits, 0.25, 2, k_min=3)


def test_calibrate_tail_reaches_the_target_mean_retention():
  from score_jax.compress.selection import calibrate_tail, tail_count
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.standard_normal((64, 100)) * rng.uniform(0.5, 4.0, (64, 1)), jnp.float32)
  for target in (0.05, 0.1):
    tail = calibrate_tail(logits, target, 20)
    counts = np.asarray(tail_count(logits, tail, 20))
    assert counts.mean() / 100 <= target and counts.mean() / 100 > target - 0.01
    assert counts.std() > 0  # peaked rows keep fewer than flat ones
  assert calibrate_tail(logits, 0.1, 20) < calibrate_tail(logits, 0.05, 20)  # less tail, more tokens
  tail = calibrate_tail(logits, 0.1, 20, k_min=6)  # a floor of 6%: the rest of the budget follows the tail
  counts = np.asarray(tail_count(logits, tail, 20, k_min=6))
  assert counts.min() == 6 and 0.09 < counts.mean() / 100 <= 0.1 and counts.max() > 6
  with pytest.raises(ValueError, match="floor of 12 of 100 tokens"):
    calibrate_tail(logits, 0.1, 20, k_min=12)
