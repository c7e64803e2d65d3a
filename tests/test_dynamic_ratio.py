"""Dynamic sample-ratio ladder and the per-sample replay memory."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.rl import dynamic_ratio as dr


def test_ladder_and_moves():
  ladder = dr.ratio_ladder(0.02)
  np.testing.assert_allclose(ladder, [0.01, 0.02, 0.04, 0.08, 0.12])
  r = 0.02
  r = dr.update_ratio(r, 1.0, ladder)
  assert r == pytest.approx(0.01)
  assert dr.update_ratio(r, 0.9, ladder) == pytest.approx(0.01)  # not below min(0.01, r0)
  for want in (0.02, 0.04, 0.08, 0.12, 0.12):  # too hard: doubles, capped at max(0.12, r0)
    r = dr.update_ratio(r, 0.0, ladder)
    assert r == pytest.approx(want)
  assert dr.update_ratio(0.12, 0.5, ladder) == pytest.approx(0.12)  # in between: unchanged
  assert dr.update_ratio(0.12, 0.875, ladder) == pytest.approx(0.08)  # one rung down
  assert dr.update_ratio(0.04, 0.125, ladder) == pytest.approx(0.08)
  np.testing.assert_allclose(dr.ratio_ladder(0.2), [0.01, 0.0125, 0.025, 0.05, 0.1, 0.2])  # hi = max(0.12, r0)
  with pytest.raises(ValueError):
    dr.update_ratio(0.03, 0.0, ladder)
  with pytest.raises(ValueError):
    dr.ratio_ladder(0.0)


def test_memory_append_ring_and_old_logits():
  mem = dr.init_memory(token_capacity=5, frame_capacity=2, n_tokens=4, n_frames=2, batch_shape=(2,))
  assert float(dr.mean_token_reward(mem)[0]) == 0.5  # empty: neutral
  append = jax.jit(dr.append_token)
  m1 = jnp.zeros((2, 3, 4), bool).at[:, :, 0].set(True)
  mem = append(mem, m1, jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
  np.testing.assert_array_equal(mem.token_valid[0], [True, True, True, False, False])
  np.testing.assert_allclose(dr.mean_token_reward(mem), [2 / 3, 0.0])
  m2 = jnp.zeros((2, 3, 4), bool).at[:, :, 1].set(True)
  mem = append(mem, m2, jnp.ones((2, 3)))  # wraps: slots 3, 4, 0
  assert int(mem.token_count[0]) == 6 and bool(mem.token_valid.all())
  np.testing.assert_array_equal(mem.token_masks[0, :, 1], [True, False, False, True, True])
  np.testing.assert_allclose(mem.token_rewards[0], [1, 1, 0, 1, 1])
  mem = dr.append_frame(mem, jnp.ones((2, 2, 2), bool), jnp.array([[1.0, 0.0], [0.0, 0.0]]))
  assert bool(mem.frame_valid.all())
  with pytest.raises(ValueError):
    dr.append_frame(mem, jnp.ones((2, 3, 2), bool), jnp.zeros((2, 3)))  # more than the capacity
  mem = dr.set_old_logits(mem, jnp.ones((2, 4)), jnp.ones((2, 2)))
  mem = dr.set_old_logits(mem, jnp.full((2, 4), 7.0), jnp.full((2, 2), 7.0))  # later visits keep the first
  np.testing.assert_allclose(mem.old_token_logits, 1.0)
  np.testing.assert_allclose(mem.old_frame_logits, 1.0)


def test_per_sample_levels():
  n = 5
  # easy -> one rung down (clamped at 0), hard -> one up (clamped at the top), in between -> stays
  got = dr.update_levels(np.array([4, 4, 0, 2, 1]), np.array([0.9, 0.1, 0.95, 0.5, 0.125]), n)
  np.testing.assert_array_equal(got, [3, 4, 0, 2, 2])
  for level, reward in ((4, 0.9), (0, 0.0), (2, 0.3)):  # the same rule as the single-rate update
    assert dr.update_levels(np.array([level]), np.array([reward]), n)[0] == dr.update_level(level, reward, n)
  with pytest.raises(ValueError, match="one entry per sample"):
    dr.update_levels(np.array([1, 2]), np.array([0.5]), n)
  with pytest.raises(ValueError, match="outside"):
    dr.update_levels(np.array([5]), np.array([0.5]), n)
  assert dr.level_of(0.04, dr.ratio_ladder(0.02)) == 2
  with pytest.raises(ValueError, match="not on the ladder"):
    dr.level_of(0.03, dr.ratio_ladder(0.02))


def test_memory_records_the_rung_of_each_token_rollout():
  mem = dr.init_memory(token_capacity=4, frame_capacity=2, n_tokens=3, n_frames=2, batch_shape=(2,))
  append = jax.jit(dr.append_token)
  masks = jnp.ones((2, 3, 3), bool)
  mem = append(mem, masks, jnp.zeros((2, 3)), jnp.array([1, 4]))  # one rung per sample
  np.testing.assert_array_equal(mem.token_levels, [[1, 1, 1, 0], [4, 4, 4, 0]])
  mem = append(mem, masks[:, :2], jnp.zeros((2, 2)), jnp.array([2, 3]))  # wraps: slots 3, 0
  np.testing.assert_array_equal(mem.token_levels, [[2, 1, 1, 2], [3, 4, 4, 3]])
  mem = jax.jit(dr.append_frame)(mem, jnp.ones((2, 2, 2), bool), jnp.zeros((2, 2)), jnp.array([0, 2]))
  np.testing.assert_array_equal(mem.frame_levels, [[0, 0], [2, 2]])  # frame rollouts record theirs too
