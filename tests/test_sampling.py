"""Mask samplers and log-probs: hand-computed values and distributional properties."""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.rl.sampling import (bernoulli_logprob, bernoulli_sample, cheap_set_logprob,
                                   group_sample, gumbel_topk_sample, mask_logprob,
                                   per_token_keep_logprob, plackett_luce_logprob,
                                   reverse_cumlogsumexp, sized_group_sample, sized_topk_sample)

# jit once per function: far fewer compiles than running every op eagerly.
PL = jax.jit(plackett_luce_logprob)
GUMBEL = jax.jit(gumbel_topk_sample, static_argnums=2)
BERN = jax.jit(bernoulli_sample, static_argnums=2)
GROUP = jax.jit(group_sample, static_argnums=(2, 3, 4))
LOGPROB = jax.jit(mask_logprob, static_argnums=2)


def _randn(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


LOG123 = np.log(np.array([[1.0, 2.0, 3.0]], np.float32))  # weights 1, 2, 3; total 6


def test_plackett_luce_by_hand():
  # order (2, 0): 3/6 * 1/(1+2) = 1/6
  np.testing.assert_allclose(PL(LOG123, np.array([[2, 0]])), [math.log(1 / 6)],
                             rtol=1e-5)
  # order (1, 2, 0), k = N: 2/6 * 3/4 * 1/1 = 1/4
  np.testing.assert_allclose(PL(LOG123, np.array([[1, 2, 0]])),
                             [math.log(1 / 4)], rtol=1e-5)
  # the order matters: (0, 2) = 1/6 * 3/5
  np.testing.assert_allclose(PL(LOG123, np.array([[0, 2]])),
                             [math.log(1 / 10)], rtol=1e-5)


def test_plackett_luce_normalised_and_grad_finite():
  n, k = 5, 3
  logits = _randn(0, (n,)) * 2
  orders = np.array(list(itertools.permutations(range(n), k)))  # 60 ordered 3-subsets
  lp = PL(jnp.broadcast_to(logits, (len(orders), n)), orders)
  np.testing.assert_allclose(jnp.sum(jnp.exp(lp)), 1.0, rtol=1e-5)
  full = np.array([[4, 0, 2, 1, 3]])  # k = N: empty never-chosen set
  g = jax.jit(jax.grad(lambda l: plackett_luce_logprob(l, full).sum()))(logits[None])
  assert np.all(np.isfinite(g))


def test_plackett_luce_stable_for_large_logits():
  logits = np.array([[80.0, 0.0, -80.0, 0.0]], np.float32)
  lp = PL(logits, np.array([[0, 1, 3]]))
  np.testing.assert_allclose(lp, [math.log(1 / 2)], atol=1e-5)  # 1 * (1/2) * 1


def test_reverse_cumlogsumexp_blocked():
  x = _randn(11, (2, 10)) * 30  # k = 10 > block = 4: three blocks, the last one padded
  f = jax.jit(lambda x: reverse_cumlogsumexp(x, block=4))
  want = np.logaddexp.accumulate(x[:, ::-1].astype(np.float64), axis=-1)[:, ::-1]
  np.testing.assert_allclose(f(x), want, rtol=1e-5)
  g = jax.jit(jax.grad(lambda x: reverse_cumlogsumexp(x, block=4).sum()))(x)
  assert np.all(np.isfinite(g))
  np.testing.assert_allclose(g.sum(-1), [10.0, 10.0], rtol=1e-4)  # each output's softmax weights sum to 1


def test_cheap_set_and_per_token():
  np.testing.assert_allclose(cheap_set_logprob(LOG123, np.array([[True, False, True]])),
                             [math.log(1 / 6) + math.log(3 / 6)], rtol=1e-5)
  logits = np.array([[0.0, math.log(3.0), math.log(3.0)]], np.float32)  # sigmoid: .5, .75, .75
  mask = np.array([[True, True, False]])
  np.testing.assert_allclose(per_token_keep_logprob(logits, mask),
                             [[math.log(0.5), math.log(0.75), math.log(0.25)]], rtol=1e-5)
  np.testing.assert_allclose(bernoulli_logprob(logits, mask),
                             [math.log(0.5 * 0.75 * 0.25)], rtol=1e-5)


def _pl_prob(w, order):
  p, left = 1.0, float(sum(w))
  for i in order:
    p *= w[i] / left
    left -= w[i]
  return p


def test_gumbel_topk_matches_plackett_luce():
  logits = np.array([0.5, -0.3, 1.2, 0.0], np.float32)
  w = np.exp(logits.astype(np.float64))
  n_samples = 40000
  s = GUMBEL(jax.random.PRNGKey(7), jnp.broadcast_to(logits, (n_samples, 4)), 2)
  order, mask = np.asarray(s.order), np.asarray(s.mask)
  incl = np.zeros(4)
  for o in itertools.permutations(range(4), 2):
    p = _pl_prob(w, o)
    incl[list(o)] += p
    freq = np.mean((order[:, 0] == o[0]) & (order[:, 1] == o[1]))
    assert abs(freq - p) < 0.01, (o, freq, p)
  np.testing.assert_allclose(mask.mean(0), incl, atol=0.01)
  np.testing.assert_allclose(incl.sum(), 2.0)


def test_gumbel_sample_structure():
  logits = _randn(1, (3, 10))
  s = GUMBEL(jax.random.PRNGKey(2), logits, 4)
  idx = np.asarray(s.indices)
  assert idx.shape == (3, 4) and np.all(np.diff(idx, axis=-1) > 0)
  np.testing.assert_array_equal(np.sort(s.order, -1), idx)
  assert np.all(np.asarray(s.mask).sum(-1) == 4) and np.all(s.valid)
  np.testing.assert_array_equal(np.take_along_axis(np.asarray(s.mask), idx, -1), True)


def test_bernoulli_bound_and_structure():
  logits = _randn(3, (64, 12)) * 3 - 2.5
  s = BERN(jax.random.PRNGKey(4), logits, 3)
  mask, valid, idx = map(np.asarray, (s.mask, s.valid, s.indices))
  counts = mask.sum(-1)
  assert counts.max() == 3 and counts.min() < 3  # bound is hit and the count varies
  np.testing.assert_array_equal(valid.sum(-1), counts)
  for m, v, i in zip(mask, valid, idx):
    assert np.all(v[:v.sum()]) and np.all(np.diff(i[v]) > 0)  # valid first, ascending
    np.testing.assert_array_equal(np.flatnonzero(m), i[v])
    assert np.all(i[~v] == 0)


def test_bernoulli_truncation_keeps_largest():
  logits = np.array([[10.0, 100.0, 50.0, 20.0], [-100.0, -100.0, -100.0, -100.0]], np.float32)
  s = BERN(jax.random.PRNGKey(5), logits, 2)
  np.testing.assert_array_equal(s.mask, [[0, 1, 1, 0], [0, 0, 0, 0]])
  np.testing.assert_array_equal(s.valid, [[1, 1], [0, 0]])


def test_bernoulli_frequencies_untruncated():
  logits = np.array([-1.0, 0.0, 2.0], np.float32)
  s = BERN(jax.random.PRNGKey(6), jnp.broadcast_to(logits, (20000, 3)), 3)
  np.testing.assert_allclose(np.asarray(s.mask).mean(0), jax.nn.sigmoid(logits), atol=0.015)


def test_group_sample_and_relogprob_jit():
  b, n, k, g = 2, 8, 3, 5
  logits = _randn(8, (b, n))
  s = GROUP(jax.random.PRNGKey(9), logits, k, g, "gumbel_topk")
  assert s.indices.shape == (b, g, k) and s.mask.shape == (b, g, n)
  assert len({tuple(x) for x in np.asarray(s.indices[0])}) > 1  # groups use different keys
  lp = LOGPROB(logits, s, "plackett_luce")
  assert lp.shape == (b, g)
  w = np.exp(logits.astype(np.float64))
  np.testing.assert_allclose(lp[1, 2], math.log(_pl_prob(w[1], s.order[1, 2])), rtol=1e-5)
  assert LOGPROB(logits, s, "per_token").shape == (b, g, n)
  want = np.log(w[0] / w[0].sum())[np.asarray(s.indices[0, 3])].sum()
  np.testing.assert_allclose(LOGPROB(logits, s, "cheap_set")[0, 3], want, rtol=1e-5)
  sb = GROUP(jax.random.PRNGKey(10), logits, k, g, "bernoulli")
  assert sb.mask.shape == (b, g, n) and np.asarray(sb.mask).sum(-1).max() <= k


SIZED = jax.jit(sized_topk_sample, static_argnums=3)


def test_sized_topk_counts_structure_and_exact_logprob():
  """Counts follow softmax(count logits); kept = the first c of the order, ascending, valid first;
  the log-prob is log P(level) + log PL(prefix), matching sampled frequencies of (level, ordered prefix)."""
  logits = np.array([0.5, -0.3, 1.2, 0.0], np.float32)
  count_logits = np.array([0.3, -0.4], np.float32)  # levels keep 1 or 2 tokens
  counts, n_samples = (1, 2), 40000
  s = SIZED(jax.random.PRNGKey(3), jnp.broadcast_to(logits, (n_samples, 4)),
            jnp.broadcast_to(count_logits, (n_samples, 2)), counts)
  level, count, order, mask, valid, idx = map(np.asarray, (s.level, s.count, s.order, s.mask, s.valid, s.indices))
  p_level = np.exp(count_logits) / np.exp(count_logits).sum()
  np.testing.assert_allclose(np.bincount(level, minlength=2) / n_samples, p_level, atol=0.01)
  np.testing.assert_array_equal(count, np.asarray(counts)[level])
  np.testing.assert_array_equal(mask.sum(-1), count)
  np.testing.assert_array_equal(valid.sum(-1), count)
  for i in range(50):
    c = count[i]
    np.testing.assert_array_equal(idx[i, :c], np.sort(order[i, :c]))
    assert np.all(idx[i, c:] == 0) and np.all(valid[i, :c])
  w = np.exp(logits.astype(np.float64))
  lp = np.asarray(mask_logprob(jnp.asarray(logits)[None], jax.tree_util.tree_map(lambda x: x[None], s),
                               "sized_plackett_luce", jnp.asarray(count_logits)[None]))[0]
  for lev, c in enumerate(counts):
    for o in itertools.permutations(range(4), c):
      want = p_level[lev] * _pl_prob(w, o)
      hit = (level == lev) & np.all(order[:, :c] == np.asarray(o), axis=-1)
      assert abs(hit.mean() - want) < 0.01, (lev, o, hit.mean(), want)
      if hit.any():
        np.testing.assert_allclose(lp[np.flatnonzero(hit)[0]], math.log(want), rtol=1e-5)


@pytest.mark.slow  # ~16 s; an option, not the default sampler; keeps the default run under 15 minutes
def test_sized_logprob_gradient_reaches_both_heads():
  logits, count_logits = _randn(11, (2, 6)), _randn(12, (2, 3))
  s = sized_group_sample(jax.random.PRNGKey(0), logits, count_logits, (1, 2, 3), 4)
  assert s.mask.shape == (2, 4, 6) and s.level.shape == (2, 4)
  f = lambda l, c: mask_logprob(l, s, "sized_plackett_luce", c).sum()
  gl, gc = jax.grad(f, argnums=(0, 1))(jnp.asarray(logits), jnp.asarray(count_logits))
  assert np.all(np.isfinite(gl)) and np.abs(gl).sum() > 0 and np.abs(gc).sum() > 0
  np.testing.assert_allclose(np.asarray(gc).sum(-1), 0.0, atol=1e-5)  # softmax: shift-invariant


def test_explore_count_logits_mixes_in_a_uniform_share():
  from score_jax.rl.sampling import explore_count_logits
  c = jnp.array([[30.0, 0.0, -30.0, 0.0]])
  p = np.exp(np.asarray(explore_count_logits(c, 0.2)))
  np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(p[0], [0.8 + 0.05, 0.05, 0.05, 0.05], atol=1e-6)  # a sure head still explores
  np.testing.assert_allclose(explore_count_logits(c, 0.0), jax.nn.log_softmax(c), atol=1e-6)
