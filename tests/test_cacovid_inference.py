"""CaCoVID inference-time selection: per-frame budgets, per-frame top tokens, uniform fill."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.compress.cacovid_inference import (cacovid_keep_indices, frame_budgets, importance_budget,
                                                  uniform_positions)
from score_jax.compress.selection import budget

KEEP = jax.jit(cacovid_keep_indices, static_argnums=(2, 3, 4))
BUDGETS = jax.jit(frame_budgets, static_argnums=(1, 2, 3, 4))
T, P = 8, 16
N = T * P


def test_frame_budgets_sum_and_bounds():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(4, T)) * 5, jnp.float32).at[0].set(jnp.arange(T) * 10.0)
  for ratio, share in ((0.25, None), (0.25, 0.5), (0.15, None), (0.1, None)):
    q = np.asarray(BUDGETS(logits, ratio, P, 0.5, share))
    k_imp = importance_budget(N, ratio, 0.5)
    s = 1.5 * ratio if share is None else share
    hi = max(int(0.5 * P * s), -(-k_imp // T))
    assert np.all(q.sum(-1) == k_imp)
    assert q.min() >= (1 if k_imp >= T else 0) and q.max() <= hi  # 0.1: 6 tokens < 8 frames
  q = np.asarray(BUDGETS(logits, 0.25, P, 0.5, 0.5))  # caps are loose: the favoured frame gets the most
  assert q[0, -1] == q[0].max() > q[0, 0]
  flat = np.asarray(BUDGETS(jnp.zeros((1, T)), 0.25, P, 0.5, None))  # equal frames: equal budgets
  np.testing.assert_array_equal(flat, importance_budget(N, 0.25, 0.5) // T)


def test_keep_indices_top_tokens_and_uniform_fill():
  rng = np.random.default_rng(1)
  tok = jnp.asarray(rng.normal(size=(2, T, P)), jnp.float32)
  idx = np.asarray(KEEP(tok, jnp.zeros((2, T)), 0.25, 0.5, None))
  k, k_imp = budget(N, 0.25), importance_budget(N, 0.25, 0.5)
  assert idx.shape == (2, k) and np.all(np.diff(idx, axis=-1) > 0) and idx.max() < N
  per_frame = k_imp // T  # equal frame logits -> equal budgets
  for b in range(2):
    top = np.argsort(-np.asarray(tok[b]), axis=-1)[:, :per_frame] + np.arange(T)[:, None] * P
    assert set(top.ravel()) <= set(idx[b])  # every frame's best tokens are kept
    rest = np.setdiff1d(np.arange(N), top.ravel())
    fill = rest[uniform_positions(len(rest), k - k_imp)]
    np.testing.assert_array_equal(np.union1d(top.ravel(), fill), idx[b])  # the rest: evenly spread
  only_uniform = np.asarray(KEEP(tok, jnp.zeros((2, T)), 0.25, 0.0, None))  # imp = 0: pure uniform
  np.testing.assert_array_equal(only_uniform[0], uniform_positions(N, k))
  only_imp = np.asarray(KEEP(tok, jnp.zeros((2, T)), 0.25, 1.0, None))
  assert only_imp.shape == (2, k)


def test_policy_end_to_end_and_errors():
  from score_jax.compress.cacovid_inference import policy_keep_indices
  from score_jax.compress.cacovid_policy import CaCoVIDPolicy
  policy = CaCoVIDPolicy(hidden=8, num_heads=2)
  visual, question = jnp.ones((1, T, P, 8)), jnp.ones((1, 3, 8))
  shapes = jax.eval_shape(policy.init, jax.random.key(0), visual, question)
  params = jax.tree_util.tree_map(lambda s: jnp.full(s.shape, 0.1, s.dtype), shapes)["params"]
  idx = jax.jit(policy_keep_indices, static_argnums=(0, 5, 6, 7))(policy, params, visual, question, None, 0.25, 0.5,
                                                                  None)
  assert idx.shape == (1, budget(N, 0.25))
  with pytest.raises(ValueError):
    frame_budgets(jnp.zeros((1, T)), 0.25, P, 0.5, 0.1)  # frame cap below the floor
