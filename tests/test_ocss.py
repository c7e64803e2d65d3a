"""OCSS (CaCoVID token-mode sampler), frame-mode and content rollouts."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.rl import ocss

FRAME_SAMPLE = jax.jit(ocss.ocss_frame_sample, static_argnums=(2, 3))
FRAME_LOGPROB = jax.jit(ocss.ocss_frame_logprob, static_argnums=(2,))
GROUP = jax.jit(ocss.ocss_group_sample, static_argnums=(2, 3, 4))
LOGPROB = jax.jit(ocss.ocss_logprob, static_argnums=(2,))


def test_subspace_count_and_sizes():
  assert ocss.num_subspaces(0.02, 2.0) == 25  # CaCoVID default: 25 sub-spaces of ~8 of 196 tokens
  assert ocss.num_subspaces(0.6, 2.0) == 1
  sizes = np.bincount(ocss.subspace_of_rank(196, 25))
  assert len(sizes) == 25 and sizes.sum() == 196 and set(sizes) == {7, 8} and sizes[0] == 8
  assert ocss.subspace_cap(25) == pytest.approx(0.1) and ocss.subspace_cap(2) == 0.9
  assert ocss.subspace_cap(1) == 1.0
  assert ocss.tokens_per_frame(0.02, 196) == 4
  with pytest.raises(ValueError):
    ocss.num_subspaces(0.0)


def test_cap_probabilities_caps_and_sums():
  rng = np.random.default_rng(0)
  p = jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 10)) * 3, jnp.float32), axis=-1)
  capped = jax.jit(ocss.cap_probabilities, static_argnums=1)(p, 0.2)
  np.testing.assert_allclose(capped.sum(-1), 1.0, rtol=1e-5)
  assert float(capped.max()) <= 0.2 + 1e-6
  # uncapped entries keep their ratios (water-filling), capped ones sit at the cap
  for row_p, row_c in zip(np.asarray(p), np.asarray(capped)):
    free = row_c < 0.2 - 1e-6
    p_floor = np.maximum(row_p, 1 / 100)
    np.testing.assert_allclose(row_c[free] / row_c[free].sum(), p_floor[free] / p_floor[free].sum(), rtol=1e-4)
  # a hand case: [0.6, 0.25, 0.15] capped at 0.5 -> [0.5, 0.5 * 0.25/0.4, 0.5 * 0.15/0.4]
  np.testing.assert_allclose(ocss.cap_probabilities(jnp.array([0.6, 0.25, 0.15]), 0.5), [0.5, 0.3125, 0.1875],
                             rtol=1e-5)
  # entries are floored at 1/n^2 first (CaCoVID): [0.9, 0.1 -> 0.25 after flooring], renormalised
  np.testing.assert_allclose(ocss.cap_probabilities(jnp.array([0.9, 0.1]), 0.9), [0.9 / 1.15, 0.25 / 1.15],
                             rtol=1e-5)
  with pytest.raises(ValueError):
    ocss.cap_probabilities(jnp.ones((4,)) / 4, 0.2)  # 4 * 0.2 < 1


def _enumerate(logits, k, l):
  """All ordered draws of one frame with their OCSS probabilities."""
  p = logits.shape[-1]
  orders = np.array(list(itertools.permutations(range(p), k)), np.int32)
  lp = FRAME_LOGPROB(jnp.broadcast_to(logits, (len(orders), p)), jnp.asarray(orders), l)
  return orders, np.exp(np.asarray(lp, np.float64))


def test_logprob_matches_enumeration_and_empirical_frequencies():
  logits = jnp.array([2.0, 1.0, 0.5, 0.0, -1.0, 0.3], jnp.float32)
  k, l = 2, 2  # 6 tokens, two sub-spaces of 3 ({0, 1, 2} and {3, 4, 5} by sorted rank)
  orders, probs = _enumerate(logits, k, l)
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
  order_desc = np.argsort(-np.asarray(logits), kind="stable")
  top, bottom = set(order_desc[:3]), set(order_desc[3:])
  straddle = [not (set(o) <= top or set(o) <= bottom) for o in orders]
  assert np.all(probs[straddle] == 0.0)  # a draw never leaves its sub-space
  # sub-space masses ~0.81 / 0.19 are within the 0.9 cap; the 1/l^2 = 0.25 floor lifts the small one
  mass_top = float(jax.nn.softmax(logits)[jnp.asarray(sorted(top))].sum())
  in_top = np.array([set(o) <= top for o in orders])
  np.testing.assert_allclose(probs[in_top].sum(), mass_top / (mass_top + 0.25), rtol=1e-5)

  draws = 20000
  samples = np.asarray(FRAME_SAMPLE(jax.random.key(0), jnp.broadcast_to(logits, (draws, 6)), k, l))
  index = {tuple(o): i for i, o in enumerate(orders)}
  freq = np.bincount([index[tuple(s)] for s in samples], minlength=len(orders)) / draws
  np.testing.assert_allclose(freq, probs, atol=0.012)


def test_within_clip_flattens_inside_subspace():
  logits = jnp.array([5.0, 0.0, -5.0, -6.0], jnp.float32)  # l = 1: one sub-space of 4, s = 4
  orders, probs = _enumerate(logits, 1, 1)
  # raw softmax would put ~0.99 on token 0; the clamp keeps every token in [1/8, 1/2] before renormalising
  np.testing.assert_allclose(probs, np.array([0.5, 0.125, 0.125, 0.125]) / 0.875, rtol=1e-5)


def test_group_sample_first_topk_static_and_logprob():
  rng = np.random.default_rng(1)
  b, t, p, k, g, l = 2, 3, 8, 2, 5, 2
  logits = jnp.asarray(rng.normal(size=(b, t, p)) * 2, jnp.float32)
  s = GROUP(jax.random.key(3), logits, k, g, l)
  assert s.indices.shape == (b, g, t * k) and s.mask.shape == (b, g, t * p)
  assert np.all(np.diff(np.asarray(s.indices), axis=-1) > 0)  # ascending, unique
  assert np.all(np.asarray(s.mask).sum(-1) == t * k)
  per_frame = np.asarray(s.mask).reshape(b, g, t, p).sum(-1)
  assert np.all(per_frame == k)  # exactly k tokens in every frame
  top = np.sort(np.argsort(-np.asarray(logits), axis=-1)[..., :k], axis=-1) + np.arange(t)[:, None] * p
  np.testing.assert_array_equal(np.asarray(s.indices[:, 0]), top.reshape(b, t * k))
  lp = np.asarray(LOGPROB(logits, s, l))
  assert lp.shape == (b, g) and np.all(np.isfinite(lp)) and np.all(lp < 0)
  # other logits can make a draw impossible (it straddles two sub-spaces): -inf, not NaN
  flipped = np.asarray(LOGPROB(-logits, s, l))
  assert not np.any(np.isnan(flipped))


def test_content_and_frame_mode():
  rng = np.random.default_rng(2)
  b, t, p, d = 2, 4, 8, 6
  visual = jnp.asarray(rng.normal(size=(b, t, p, d)), jnp.float32)
  c = jax.jit(ocss.content_sample, static_argnums=1)(visual, 2)
  assert c.indices.shape == (b, 1, t * 2)
  assert np.all(np.asarray(c.mask).reshape(b, t, p).sum(-1) == 2)
  frame_logits = jnp.array([[5.0, 0.0, 0.0, -5.0], [0.0, 0.0, 3.0, 0.0]], jnp.float32)
  fn = jax.jit(ocss.frame_mode_sample, static_argnums=(3, 4, 5))
  s, fmask = fn(jax.random.key(0), frame_logits, visual, 6, 2, 50)
  assert s.indices.shape == (b, 50, 6) and fmask.shape == (b, 50, t)
  assert np.all(np.asarray(fmask).sum(-1) == 2)
  np.testing.assert_array_equal(np.asarray(fmask[0, 0]), [True, True, False, False])  # first: top frames
  tok_frames = np.asarray(s.indices) // p
  assert np.all(np.take_along_axis(np.asarray(fmask), tok_frames, axis=-1))  # tokens only in chosen frames
  assert np.all(np.diff(np.asarray(s.indices), axis=-1) > 0)
  # sample 0's frame 0 (softmax ~0.99, capped at 3/t = 0.75) is kept by most rollouts
  assert np.asarray(fmask[0, 1:, 0]).mean() > 0.7
