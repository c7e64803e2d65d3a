"""Group-wise advantage estimators on hand-computed groups of 4."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.rl import advantages as adv_lib
from score_jax.rl.advantages import (get_advantage, group_normalize, register_advantage, split_advantage,
                                     token_advantages)

EPS = 1e-6
TASK = np.array([[1.0, 1.0, 0.0, 0.0]], np.float32)
COMP = np.array([[0.9, 0.5, 0.9, 0.5]], np.float32)


def _norm(d, var):  # d already centred, var with ddof=0
  return np.asarray(d) / (math.sqrt(var) + EPS)


def test_group_normalize_and_constant_groups():
  np.testing.assert_allclose(group_normalize(TASK), _norm([[0.5, 0.5, -0.5, -0.5]], 0.25), rtol=1e-6)
  # float32 mean of eight 0.3s is not exactly 0.3, so a plain (r - mean) / (std + eps) is ~0.03
  const = np.array([[0.3] * 8, [1.0] * 8], np.float32)
  for name in ("grpo", "split", "pos_neg"):
    assert np.all(np.asarray(get_advantage(name)(const, const)) == 0.0), name


def test_grpo_sums_rewards():
  task = np.array([[1.0, 0.0, 1.0, 0.0]], np.float32)
  comp = np.array([[0.5, 0.5, 0.9, 0.9]], np.float32)
  # r = [1.5, 0.5, 1.9, 0.9], mean 1.2, var (.09 + .49 + .49 + .09) / 4 = .29
  want = _norm([[0.3, -0.7, 0.7, -0.3]], 0.29)
  np.testing.assert_allclose(get_advantage("grpo")(task, comp), want, rtol=1e-5)
  np.testing.assert_allclose(get_advantage("grpo")(task), group_normalize(task))


def test_split_credits_compression_only_to_right_answers():
  # task part: [1, 1, -1, -1]; gated comp = [.9, .5, 0, 0], mean .35,
  # deviations [.55, .15, -.35, -.35], var (.3025 + .0225 + .1225 + .1225) / 4 = .1425
  want = _norm([[0.5, 0.5, -0.5, -0.5]], 0.25) + 0.5 * _norm([[0.55, 0.15, -0.35, -0.35]], 0.1425)
  got = get_advantage("split")(TASK, COMP, comp_weight=0.5)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert get_advantage("decoupled") is get_advantage("split")
  # ungated (grpo-like) would reward rollout 2 (wrong, .9 compression) more than rollout 3
  assert got[0, 2] == got[0, 3]


def test_split_with_explicit_correct():
  correct = np.array([[True, False, False, False]])
  # gated comp = [.9, 0, 0, 0]: mean .225, deviations [.675, -.225 x3], var .151875
  want = _norm([[0.5, 0.5, -0.5, -0.5]], 0.25) + _norm([[0.675, -0.225, -0.225, -0.225]], 0.151875)
  np.testing.assert_allclose(get_advantage("split")(TASK, COMP, correct=correct), want, rtol=1e-5)


def test_keep_drop_pair_and_token_advantages():
  a_keep, a_drop = get_advantage("keep_drop")(TASK, COMP)
  np.testing.assert_allclose(a_keep, _norm([[0.5, 0.5, -0.5, -0.5]], 0.25), rtol=1e-6)
  np.testing.assert_allclose(a_drop, get_advantage("split")(TASK, COMP), rtol=1e-6)
  mask = np.array([[[True, False]] * 4])  # [1, 4, 2]
  tok = token_advantages((a_keep, a_drop), mask)
  assert tok.shape == (1, 4, 2)
  np.testing.assert_allclose(tok[..., 0], a_keep)
  np.testing.assert_allclose(tok[..., 1], a_drop)
  np.testing.assert_allclose(token_advantages(a_keep, mask)[..., 1], a_keep)


def test_pos_neg_separate_normalisation():
  task = np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)
  # d = [.75, -.25, -.25, -.25]; rms(pos) = .75, rms(neg) = .25
  got = get_advantage("pos_neg")(task, pos_weight=2.0, neg_weight=0.5)
  want = [[2 * 0.75 / (0.75 + EPS), -0.5 * 0.25 / (0.25 + EPS), -0.5 * 0.25 / (0.25 + EPS),
           -0.5 * 0.25 / (0.25 + EPS)]]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # gated compression enters the reward: r = [1 + .9, 0, 0, 0]
  got = get_advantage("pos_neg")(task, COMP)
  np.testing.assert_allclose(got, [[1.0, -1.0, -1.0, -1.0]], rtol=1e-5)


def test_registry_and_jit():
  with pytest.raises(KeyError):
    get_advantage("nope")
  with pytest.raises(ValueError):
    register_advantage("grpo")(lambda *a, **k: None)
  register_advantage("_test_dummy")(lambda task, comp=None, **kw: task * 0 + 7)
  try:
    assert float(get_advantage("_test_dummy")(TASK)[0, 0]) == 7
  finally:
    del adv_lib._REGISTRY["_test_dummy"]
  rewards = np.random.default_rng(0).random((3, 8)).astype(np.float32)
  f = jax.jit(get_advantage("split"))
  out = f(rewards, rewards)
  assert out.shape == (3, 8)
  np.testing.assert_allclose(out, get_advantage("split")(rewards, rewards), rtol=1e-5)


def test_split_compression_term_changes_the_gradient_only_when_kept_counts_differ():
  """All rollouts right: the task term is zero, so the update comes from the compression term alone;
  it is non-zero iff the group's kept counts differ (fewer kept -> those masks made more likely)."""
  import jax
  from score_jax.rl import rewards
  from score_jax.rl.losses import policy_loss
  from score_jax.rl.sampling import MaskSample, mask_logprob

  n = 6
  logits = jnp.zeros((1, n))

  def grad_for(masks):
    masks = jnp.asarray(masks, bool)[None]
    sample = MaskSample(jnp.zeros((1, 4, n), jnp.int32), jnp.zeros((1, 4, n), jnp.int32), masks, masks)
    task = jnp.ones((1, 4))
    adv = split_advantage(task, rewards.compression_reward(masks, n), comp_weight=0.5)
    logp_old = mask_logprob(logits, sample, "bernoulli")
    loss_fn = lambda l: policy_loss(mask_logprob(l, sample, "bernoulli"), logp_old, adv)[0]  # noqa: E731
    return np.asarray(jax.grad(loss_fn)(logits))

  same = [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1], [1, 0, 0, 0, 0, 1]]
  differ = [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
  np.testing.assert_allclose(grad_for(same), 0.0, atol=1e-7)
  g = grad_for(differ)
  assert np.abs(g).max() > 1e-3
  assert g[0, 3] > 0  # token 3 is kept only by the most-keeping mask: gradient descent lowers its logit


def test_split_compression_term_lowers_the_count_head_on_larger_levels():
  """sized_topk: all rollouts right, so only the compression term acts; it moves the count head
  towards the smaller levels (gradient descent raises the level-0 logit, lowers level 2's)."""
  from score_jax.rl import rewards
  from score_jax.rl.losses import policy_loss
  from score_jax.rl.sampling import mask_logprob, sized_group_sample

  n, counts = 8, (1, 2, 4)
  logits, count_logits = jnp.zeros((1, n)), jnp.zeros((1, 3))
  sample = sized_group_sample(jax.random.PRNGKey(0), logits, count_logits, counts, 16)
  assert len(set(np.asarray(sample.level[0]).tolist())) > 1  # the group's kept counts differ
  adv = split_advantage(jnp.ones((1, 16)), rewards.compression_reward(sample.mask, n), comp_weight=0.5)
  logp_old = mask_logprob(logits, sample, "sized_plackett_luce", count_logits)
  loss_fn = lambda c: policy_loss(mask_logprob(logits, sample, "sized_plackett_luce", c), logp_old, adv)[0]  # noqa: E731
  g = np.asarray(jax.grad(loss_fn)(count_logits))[0]
  assert g[0] < 0 < g[2]
