"""CaCoVID per-token PPO: asymmetric clip, keep/drop re-weighting, KL to uniform, group advantages."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.rl.ppo import group_advantage, group_advantage_by, keep_drop_kl, keep_drop_ppo_loss, keep_drop_weights, rollout_ppo_loss

LOSS = jax.jit(keep_drop_ppo_loss, static_argnames=("eps_low", "eps_high", "reweight", "kl_coef"))


def _logit(p):
  return math.log(p / (1 - p))


def test_group_advantage_unbiased_std_and_validity():
  r = jnp.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
  a = group_advantage(r)
  std = np.std([1, 0, 0, 1], ddof=1)
  np.testing.assert_allclose(a[0], (np.array([1, 0, 0, 1]) - 0.5) / (std + 1e-4), rtol=1e-5)
  np.testing.assert_array_equal(a[1], 0.0)  # constant group: no signal
  valid = jnp.array([[True, True, True, False], [True, True, False, False]])
  a = group_advantage(jnp.array([[1.0, 0.0, 1.0, 5.0], [1.0, 0.0, 9.0, 9.0]]), valid)
  m, s = 2 / 3, np.std([1, 0, 1], ddof=1)
  np.testing.assert_allclose(a[0], [(1 - m) / (s + 1e-4), -m / (s + 1e-4), (1 - m) / (s + 1e-4), 0.0], rtol=1e-5)
  np.testing.assert_allclose(a[1, 2:], 0.0)


def test_group_advantage_by_compares_rollouts_within_their_group():
  r = jnp.array([[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 7.0]])
  groups = jnp.array([[0, 0, 0, 2, 2, 2, 0]])
  valid = jnp.array([[True] * 6 + [False]])
  a = group_advantage_by(r, valid, groups, num_groups=3)
  np.testing.assert_allclose(a[0, :3], group_advantage(r[:, :3])[0], rtol=1e-6)
  np.testing.assert_allclose(a[0, 3:6], group_advantage(r[:, 3:6])[0], rtol=1e-6)
  assert float(a[0, 6]) == 0.0  # invalid
  # pooled, the same rewards give the second group's correct rollout another advantage
  assert not np.isclose(float(a[0, 5]), float(group_advantage(r, valid)[0, 5]))


def test_keep_drop_weights():
  w = keep_drop_weights(jnp.array([[True, False, False, False]]))
  np.testing.assert_allclose(w, [[0.75, 0.25, 0.25, 0.25]])  # both sides weigh 0.75 in total


def test_clip_hand_computed():
  # one rollout, two tokens: token 0 kept, token 1 dropped. Old keep probs 0.5 / 0.5.
  old = jnp.array([[0.0, 0.0]])
  mask = jnp.array([[[True, False]]])
  # new keep prob 0.8 on token 0 -> ratio 1.6; keep prob 0.6 on token 1 -> drop prob 0.4, ratio 0.8
  new = jnp.array([[_logit(0.8), _logit(0.6)]], jnp.float32)
  # A > 0: token 0 clipped at 1 + 0.28, token 1 ratio 0.8 (min takes 0.8, the lower clip does not bind)
  loss, aux = LOSS(new, old, mask, jnp.array([[1.0]]), reweight=False)
  np.testing.assert_allclose(loss, -(1.28 + 0.8) / 2, rtol=1e-5)
  np.testing.assert_allclose(aux["clip_fraction"], 0.5, rtol=1e-6)
  # A < 0: token 0 ratio 1.6 (unclipped term is the min of -1.6, -1.28), token 1 clipped at 1 - 0.2
  loss, _ = LOSS(new, old, mask, jnp.array([[-1.0]]), reweight=False)
  np.testing.assert_allclose(loss, (1.6 + 0.8) / 2, rtol=1e-5)
  # gradient is zero on the clipped token (token 0 with A > 0)
  g = jax.grad(lambda l: LOSS(l, old, mask, jnp.array([[1.0]]), reweight=False)[0])(new)
  assert g[0, 0] == 0.0 and g[0, 1] != 0.0


def test_reweighting_and_validity():
  old = jnp.zeros((1, 4))
  new = jnp.array([[_logit(0.6), 0.0, 0.0, 0.0]], jnp.float32)
  mask = jnp.array([[[True, False, False, False], [True, True, True, True]]])
  adv = jnp.array([[1.0, 0.0]])
  # rollout 0: per-token loss [-1.2, -1, -1, -1]; weights [.75, .25, .25, .25] -> (-0.9 - 0.75) / 1.5 = -1.1
  # rollout 1: A = 0 -> 0; all tokens kept: f = 1, weights are 0 -> 0 / (0 + 1e-7) = 0
  loss, _ = LOSS(new, old, mask, adv, reweight=True)
  np.testing.assert_allclose(loss, (-1.1 + 0.0) / 2, rtol=1e-5)
  loss, _ = LOSS(new, old, mask, adv, jnp.array([[True, False]]), reweight=True)
  np.testing.assert_allclose(loss, -1.1, rtol=1e-5)  # only the valid rollout counts
  loss, _ = LOSS(new, old, mask[:, :1], adv[:, :1], reweight=False)
  np.testing.assert_allclose(loss, -(1.2 + 3.0) / 4, rtol=1e-5)


def test_kl_to_uniform():
  old = jnp.zeros((1, 2))
  mask = jnp.array([[[True, False]]])
  adv = jnp.zeros((1, 1))
  loss0, aux = LOSS(old, old, mask, adv, kl_coef=1.0)  # uniform policy: KL 0
  np.testing.assert_allclose(loss0, 0.0, atol=1e-7)
  new = jnp.array([[_logit(0.8), _logit(0.8)]], jnp.float32)
  _, aux = LOSS(new, old, mask, adv, kl_coef=1.0, reweight=False)
  k3 = lambda p: 0.5 / p - math.log(0.5 / p) - 1  # exp(d) - d - 1 with d = log 0.5 - log p
  np.testing.assert_allclose(aux["kl"], (k3(0.8) + k3(0.2)) / 2, rtol=1e-5)


def test_keep_drop_kl_is_the_loss_kl_term():
  rng = np.random.default_rng(0)
  new = jnp.asarray(rng.normal(size=(2, 6)), jnp.float32)
  mask = jnp.asarray(rng.random((2, 3, 6)) < 0.4)
  valid = jnp.array([[True, True, False], [True, False, True]])
  for reweight in (True, False):
    _, aux = LOSS(new, jnp.zeros((2, 6)), mask, jnp.zeros((2, 3)), valid, reweight=reweight, kl_coef=1.0)
    np.testing.assert_allclose(keep_drop_kl(new, mask, valid, reweight), aux["kl"], rtol=1e-5)


def test_rollout_ppo_loss_hand_computed():
  loss_fn = jax.jit(rollout_ppo_loss)
  old = jnp.log(jnp.array([[0.2, 0.2, 0.2, 0.2]]))
  new = jnp.log(jnp.array([[0.3, 0.1, 0.1, 0.5]]))  # ratios 1.5, 0.5, 0.5, 2.5
  adv = jnp.array([[1.0, 1.0, -1.0, 2.0]])
  # A > 0: min(1.5, 1.28) = 1.28; min(0.5, 0.8) = 0.5; A < 0: -min(-0.5, -0.8) = 0.8; rollout 3 invalid
  loss, aux = loss_fn(new, old, adv, jnp.array([[True, True, True, False]]))
  np.testing.assert_allclose(loss, (-1.28 - 0.5 + 0.8) / 3, rtol=1e-5)
  np.testing.assert_allclose(aux["clip_fraction"], 2 / 3, rtol=1e-5)
  # a draw impossible under the new policy (-inf): ratio 0, finite loss and gradient; under the old one: ignored
  new2 = new.at[0, 0].set(-jnp.inf).at[0, 2].set(jnp.log(0.22))  # rollout 2: ratio 1.1, inside the clip range
  old2 = old.at[0, 1].set(-jnp.inf)
  loss, g = jax.value_and_grad(lambda l: loss_fn(l, old2, adv)[0])(new2)
  np.testing.assert_allclose(loss, (0.0 + 1.1 - 2 * 1.28) / 3, rtol=1e-5)
  assert np.all(np.isfinite(np.asarray(g))) and float(g[0, 0]) == 0.0 and float(g[0, 1]) == 0.0
  np.testing.assert_allclose(g[0, 2], 1.1 / 3, rtol=1e-5)  # d/dlp of -(ratio * A) with A = -1
  assert float(g[0, 3]) == 0.0  # clipped
