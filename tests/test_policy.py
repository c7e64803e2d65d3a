"""ScorePolicy: shapes, exact parameter count and which inputs the logits depend on."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.compress.policy import ScorePolicy, policy_param_count

B, T, P, D, DQ, LQ = 2, 3, 4, 8, 6, 5


def _randn(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _random_params(model, *args):
  """Random parameters from the init's shapes: skips compiling the initialisers."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), *args)
  rng = np.random.default_rng(0)
  return jax.tree_util.tree_map(lambda s: rng.normal(0.0, 0.5, s.shape).astype(s.dtype), shapes)


def _init_apply(model, *args):
  params = jax.jit(model.init)(jax.random.PRNGKey(0), *args)
  apply = jax.jit(model.apply)
  return params, apply, apply(params, *args)


def _expected_count(d, h, layers, residual=True, surprise=True, dq=None, mlp=4):
  """Parameter count from the architecture, by hand (max_frames=64, max_positions=1024)."""
  d_in = d + (d if residual else 0) + (1 if surprise else 0)
  n = 2 * d + (2 * d if residual else 0) + d_in * h + h  # LNs on x / residual, in_proj
  n += (64 + 1024) * h  # frame + position embeddings
  attn = 4 * (h * h + h)  # q, k, v, out projections
  block_mlp = h * mlp * h + mlp * h + mlp * h * h + h
  n += layers * (2 * 2 * h + attn + block_mlp)  # ln_self, ln_mlp, attention, MLP
  if dq is not None:
    n += 2 * dq + dq * h + h + layers * (2 * h + attn)  # ln_q, q_proj; ln_cross, cross-attn
  if layers == 0:
    n += 2 * h + block_mlp
  return n + 2 * h + h + 1  # ln_out, head


@pytest.fixture(scope="module")
def query_model():
  """One attention model (1 block, query-conditioned) shared by several tests."""
  x = _randn(3, (B, T, P, D))
  q = _randn(4, (B, LQ, DQ))
  qmask = np.array([[True] * 3 + [False] * 2, [True] * LQ])
  model = ScorePolicy(hidden=16, num_layers=1, query_conditioned=True)
  params, apply, base = _init_apply(model, x, q, qmask)
  return params, apply, base, x, q, qmask


def test_shape_and_param_count(query_model):
  params, _, base, *_ = query_model
  assert base.shape == (B, T, P) and base.dtype == jnp.float32
  assert np.all(np.isfinite(base))
  assert policy_param_count(params) == _expected_count(D, 16, 1, dq=DQ)
  # default policy at LLaVA-OV-7B's d = 3584 (shape-only, no memory): well under 1% of 7B
  big = jax.eval_shape(ScorePolicy().init, jax.random.PRNGKey(0),
                       jax.ShapeDtypeStruct((1, 2, 196, 3584), jnp.bfloat16))
  count = policy_param_count(big)
  assert count == _expected_count(3584, 128, 1) and count < 2_000_000


def test_attention_mixes_tokens(query_model):
  params, apply, base, x, q, qmask = query_model
  x2 = x.copy()
  x2[0, 0, 0] += 3 * _randn(5, (D,))
  out = apply(params, x2, q, qmask)
  # token (2, 3): same features and residual in both inputs; changes only through attention
  assert abs(float(out[0, 2, 3] - base[0, 2, 3])) > 1e-4
  np.testing.assert_allclose(out[1], base[1], atol=1e-6)  # other sample untouched


def test_query_conditioning_respects_mask(query_model):
  params, apply, base, x, q, qmask = query_model
  noise = 3 * _randn(6, q.shape)  # random, since LayerNorm removes constant shifts
  padded = q.copy()
  padded[0, 3:] += noise[0, 3:]  # only masked-out entries of sample 0 change
  np.testing.assert_allclose(apply(params, x, padded, qmask), base, atol=1e-5)
  real = q.copy()
  real[0, 0] += noise[0, 0]
  changed = apply(params, x, real, qmask)
  assert float(jnp.max(jnp.abs(changed[0] - base[0]))) > 1e-4
  np.testing.assert_allclose(changed[1], base[1], atol=1e-6)
  with pytest.raises(ValueError):
    ScorePolicy(query_conditioned=True).init(jax.random.PRNGKey(0), x)  # question missing


def _two_videos():
  """A: static video (every frame = a). B: same except token p=0 of frame 0 (bfloat16)."""
  va = np.broadcast_to(_randn(2, (P, D)), (1, T, P, D)).copy()
  vb = va.copy()
  vb[0, 0, 0] += 3 * _randn(5, (D,))  # not a constant shift, which LayerNorm would remove
  return jnp.asarray(va, jnp.bfloat16), jnp.asarray(vb, jnp.bfloat16)


@pytest.mark.parametrize("use_residual", [True, False])
def test_residual_and_frame_embedding(use_residual):
  va, vb = _two_videos()
  # the ablation also drops the frame embedding, which keeps this to two compiled models
  model = ScorePolicy(hidden=16, num_layers=0, use_residual=use_residual,
                      use_surprise_scalar=False, add_frame_embed=use_residual)
  params = _random_params(model, va)
  apply = jax.jit(model.apply)
  la, lb = apply(params, va), apply(params, vb)
  assert la.dtype == jnp.float32
  assert policy_param_count(params) == _expected_count(D, 16, 0, use_residual, False) - (
      0 if use_residual else 64 * 16)
  # token (t=1, p=0) is identical in both videos; only its residual differs
  assert (abs(float(la[0, 1, 0] - lb[0, 1, 0])) > 1e-4) == use_residual
  np.testing.assert_allclose(la[0, 1:, 1:], lb[0, 1:, 1:], atol=1e-6)  # no mixing without attention
  # static video: frames differ only through the frame-index embedding
  assert (float(jnp.max(jnp.abs(la[0, 1] - la[0, 2]))) > 1e-6) == use_residual


def test_surprise_memory_reaches_later_still_frames():
  """Tokens p=0 and p=1 are equal and still in frames 1-2, but p=0 had another value in frame 0.
  Without position embeddings a per-token policy gives them the same logit in frame 2 unless
  use_surprise_memory shows it that p=0 changed earlier."""
  v = np.broadcast_to(_randn(2, (P, D)), (1, T, P, D)).copy()
  v[0, :, 0] = v[0, :, 1]
  v[0, 0, 0] += 3 * _randn(5, (D,))
  for memory in (True, False):
    model = ScorePolicy(hidden=16, num_layers=0, add_pos_embed=False, use_surprise_memory=memory)
    logits = model.apply(_random_params(model, v), v)
    assert (abs(float(logits[0, 2, 0] - logits[0, 2, 1])) > 1e-4) == memory, memory
