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


def test_still_places_stay_still_until_their_first_change():
  from score_jax.compress.surprise import still_places
  rng = np.random.default_rng(2)
  still = np.repeat(rng.normal(size=(1, 1, P, 8)), T, axis=1)
  still[0, 3:, 5] = rng.normal(size=8)  # place 5 changes at frame 3 and then stays as it is
  still[0, 6:, 5] *= 1.01  # a scaled copy points the same way: not a change
  still[0, 2, 7] = rng.normal(size=8)  # place 7 changes at frame 2 only (back at frame 3)
  got = np.asarray(still_places(jnp.asarray(still, jnp.float32), 0.95))[0]
  want = np.ones((T, P), bool)
  want[0] = False  # frame 0 is never still
  want[3:, 5] = False  # a place that changed stays changed
  want[2:, 7] = False
  np.testing.assert_array_equal(got, want)


def test_dedup_ranks_new_tokens_over_the_video_before_repeats():
  # a still video with one change: the per-frame quotas keep the same top places in every frame; the ranking
  # over the video keeps the changed place from its change on and frame 0's best tokens, by the policy's scores
  from score_jax.compress.surprise import still_places
  rng = np.random.default_rng(3)
  visual = np.repeat(rng.normal(size=(1, 1, P, 8)), T, axis=1)
  visual[0, 5:, 9] = rng.normal(size=8)  # token 9 changes at frame 5
  visual = jnp.asarray(visual, jnp.float32)
  scores = rng.normal(size=P)
  scores[9] = scores.max() + 1.0  # the policy's favourite place is the one that changes
  tok = jnp.broadcast_to(jnp.asarray(scores, jnp.float32), (1, T, P))
  repeated = still_places(visual, 0.95)
  k = budget(N, 0.1)  # 13 tokens
  quota = np.asarray(KEEP(tok, jnp.zeros((1, T)), 0.1, 1.0, 1.0))[0]
  assert len(np.unique(quota % P)) < k // 2  # the same few places, frame after frame
  dedup = np.asarray(jax.jit(cacovid_keep_indices, static_argnums=(2, 3, 4))(
      tok, jnp.zeros((1, T)), 0.1, 1.0, 1.0, repeated))[0]
  order = np.argsort(-np.asarray(tok[0, 0]), kind="stable")
  changed = {5 * P + 9, 6 * P + 9, 7 * P + 9}  # the best place, new from its change on
  k_imp = importance_budget(N, 0.1, 1.0)  # 12 ranked, 1 uniform fill (the first token not ranked)
  ranked = changed | set(order[:k_imp - 3])  # + frame 0's best places; no repeat
  assert ranked <= set(dedup) and len(dedup) == k == k_imp + 1
  # more budget than new tokens (19): the repeats follow in temporal order, frame 1's by score
  wide = np.asarray(jax.jit(cacovid_keep_indices, static_argnums=(2, 3, 4))(
      tok, jnp.zeros((1, T)), 0.25, 1.0, 1.0, repeated))[0]
  new = set(range(P)) | changed
  np.testing.assert_array_equal(wide, sorted(new | set(P + order[:budget(N, 0.25) - len(new)])))
  # the frame scores count: with equal token scores, frame 0's new tokens win the ties (lower index first) until
  # frame 5 is preferred
  flat = jnp.zeros((1, T, P))
  keep = jax.jit(cacovid_keep_indices, static_argnums=(2, 3, 4))
  np.testing.assert_array_equal(np.asarray(keep(flat, jnp.zeros((1, T)), 0.1, 1.0, 1.0, repeated))[0], np.arange(k))
  preferred = np.asarray(keep(flat, jnp.zeros((1, T)).at[0, 5].set(1.0), 0.1, 1.0, 1.0, repeated))[0]
  np.testing.assert_array_equal(preferred, list(range(k - 1)) + [5 * P + 9])


def test_dedup_with_no_importance_share_is_the_uniform_fill():
  # imp = 0 leaves nothing to rank: the budget is the uniform fill alone, with or without the still-places rule
  from score_jax.compress.surprise import still_places
  rng = np.random.default_rng(5)
  visual = jnp.asarray(rng.normal(size=(2, T, P, 8)), jnp.float32)
  tok = jnp.asarray(rng.normal(size=(2, T, P)), jnp.float32)
  keep = jax.jit(cacovid_keep_indices, static_argnums=(2, 3, 4))
  got = np.asarray(keep(tok, jnp.zeros((2, T)), 0.1, 0.0, 1.0, still_places(visual, 0.95)))
  want = np.asarray(keep(tok, jnp.zeros((2, T)), 0.1, 0.0, 1.0))
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got[0], uniform_positions(N, budget(N, 0.1)))
