"""Clipped policy-gradient loss and k3 KL on hand-computed ratios."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.rl.losses import clipped_pg_loss, kl_k3, policy_loss, token_entropy

# ratios [1.5, 1.5, 0.5, 0.5] against advantages [+1, -1, +1, -1]
LOGP_NEW = np.log(np.array([[1.5, 1.5, 0.5, 0.5]], np.float32))
LOGP_OLD = np.zeros((1, 4), np.float32)
ADV = np.array([[1.0, -1.0, 1.0, -1.0]], np.float32)


def test_clipped_loss_by_hand():
  # per entry -min(r*A, clip(r)*A): [-1.2, 1.5, -0.5, 0.8]; mean = 0.6 / 4
  loss, aux = clipped_pg_loss(LOGP_NEW, LOGP_OLD, ADV)
  np.testing.assert_allclose(loss, 0.15, rtol=1e-5)
  np.testing.assert_allclose(aux["clip_fraction"], 0.5)  # entries 0 and 3 are clipped
  np.testing.assert_allclose(aux["ratio_mean"], 1.0, rtol=1e-6)
  np.testing.assert_allclose([aux["ratio_min"], aux["ratio_max"]], [0.5, 1.5], rtol=1e-6)


def test_gradient_zero_where_clipped():
  g = jax.grad(lambda lp: clipped_pg_loss(lp, LOGP_OLD, ADV)[0])(jnp.asarray(LOGP_NEW))
  # d(-r*A)/dlogp = -r*A, divided by 4 entries; clipped entries get 0
  np.testing.assert_allclose(g, [[0.0, 1.5 / 4, -0.5 / 4, 0.0]], rtol=1e-5, atol=1e-7)
  g_old = jax.grad(lambda lo: clipped_pg_loss(LOGP_NEW, lo, ADV)[0])(jnp.asarray(LOGP_OLD))
  np.testing.assert_array_equal(g_old, 0.0)  # old log-probs are constants


def test_asymmetric_clip_and_mask():
  up, down, zero = np.log([[1.5]]), np.log([[0.5]]), np.zeros((1, 1))
  # ratio 1.5, A=+1: eps_high bounds it -> -min(1.5, 1.6) = -1.5 (eps_low=0.1 is irrelevant)
  np.testing.assert_allclose(clipped_pg_loss(up, zero, zero + 1, eps_low=0.1, eps_high=0.6)[0],
                             -1.5, rtol=1e-5)
  # ratio 0.5, A=-1: eps_low bounds it -> -min(-.5, -clip(.5, .4, 1.1)) = 0.5
  np.testing.assert_allclose(clipped_pg_loss(down, zero, zero - 1, eps_low=0.6, eps_high=0.1)[0],
                             0.5, rtol=1e-5)
  loss, aux = clipped_pg_loss(LOGP_NEW, LOGP_OLD, ADV, mask=np.array([[True, True, False, False]]))
  np.testing.assert_allclose(loss, (-1.2 + 1.5) / 2, rtol=1e-5)
  np.testing.assert_allclose([aux["clip_fraction"], aux["ratio_min"]], [0.5, 1.5], rtol=1e-6)


def test_per_token_broadcast():
  # [B=1, G=2, N=3] log-probs, advantages [1, 2] broadcast over tokens, last token masked
  logp_new = np.log(np.array([[[1.1, 0.9, 5.0], [1.0, 2.0, 5.0]]], np.float32))
  mask = np.array([[[True, True, False], [True, True, False]]])
  loss, aux = clipped_pg_loss(logp_new, np.zeros_like(logp_new), np.array([[1.0, 2.0]]), mask)
  # entries: -1.1, -0.9, -1*2, -min(2*2, 1.2*2) = -2.4
  np.testing.assert_allclose(loss, (-1.1 - 0.9 - 2.0 - 2.4) / 4, rtol=1e-5)
  np.testing.assert_allclose(aux["ratio_max"], 2.0, rtol=1e-6)  # masked ratio 5 ignored


def test_log_ratio_clamped():
  loss, aux = clipped_pg_loss(np.array([[100.0]]), np.array([[0.0]]), np.array([[-1.0]]))
  np.testing.assert_allclose(loss, math.exp(20.0), rtol=1e-5)
  assert np.isfinite(aux["ratio_max"])


def test_kl_k3_and_policy_loss():
  d = math.log(2.0)  # logp_ref - logp_new
  np.testing.assert_allclose(kl_k3(np.array([0.0]), np.array([d])), [2.0 - d - 1.0], rtol=1e-6)
  np.testing.assert_allclose(kl_k3(np.array([0.3]), np.array([0.3])), [0.0], atol=1e-7)
  ref = LOGP_NEW + np.array([[d, 0.0, 0.0, -d]], np.float32)  # k3: 1-d, 0, 0, .5+d-1
  kl = ((1 - d) + (0.5 + d - 1)) / 4
  loss, aux = policy_loss(LOGP_NEW, LOGP_OLD, ADV, logp_ref=ref, kl_coef=0.1)
  np.testing.assert_allclose(aux["kl"], kl, rtol=1e-5)
  np.testing.assert_allclose(loss, 0.15 + 0.1 * kl, rtol=1e-5)
  loss0, aux0 = policy_loss(LOGP_NEW, LOGP_OLD, ADV, logp_ref=ref)
  np.testing.assert_allclose(loss0, 0.15, rtol=1e-5)
  assert "kl" not in aux0
  jitted = jax.jit(policy_loss, static_argnames=("kl_coef",))
  np.testing.assert_allclose(jitted(LOGP_NEW, LOGP_OLD, ADV, logp_ref=ref, kl_coef=0.1)[0],
                             loss, rtol=1e-6)


def test_token_entropy_by_hand():
  # uniform over 4 -> log 4; logits [0, log 3] -> probs [1/4, 3/4]; rows are averaged
  h2 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
  np.testing.assert_allclose(token_entropy(np.zeros((1, 4), np.float32)), math.log(4), rtol=1e-6)
  np.testing.assert_allclose(token_entropy(np.array([[0.0, math.log(3.0)]], np.float32)), h2, rtol=1e-6)
  np.testing.assert_allclose(token_entropy(np.array([[0.0, 0.0, 0.0, 0.0], [0, 0, 0, 50.0]], np.float32)),
                             math.log(4) / 2, atol=1e-5)
