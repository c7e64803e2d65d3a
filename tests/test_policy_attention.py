"""Memory-efficient policy attention: same parameters and outputs as the attention it replaced
(`nn.MultiHeadDotProductAttention` in the SCORE policy, `Qwen2DecoderLayer` in the CaCoVID policy), and
far less temporary memory at 32 x 196 = 6272 tokens (XLA's memory analysis of the compiled gradient)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.compress import cacovid_policy as cp
from score_jax.compress import policy as pl
from score_jax.compress.blocked_attention import blocked_attention
from score_jax.models.attention import attention_mask
from score_jax.models.qwen2 import Qwen2DecoderLayer
from score_jax.models.rope import rope_cos_sin


class OldAttention(nn.MultiHeadDotProductAttention):
  """The module the SCORE policy used before, called as `PolicyAttention` is."""

  def __call__(self, x, context, key_valid=None, deterministic=True):
    mask = None if key_valid is None else key_valid[:, None, None, :]
    return super().__call__(x, context, mask=mask, deterministic=deterministic)


def old_attention(num_heads, features, dropout=0.0, name=None):
  return OldAttention(num_heads=num_heads, qkv_features=features, out_features=features, dropout_rate=dropout,
                      name=name)


def with_old_attention(monkeypatch):
  monkeypatch.setattr(pl, "PolicyAttention", old_attention)


def _inputs(b=2, t=3, p=5, d=12, lq=7):
  visual = jax.random.normal(jax.random.key(0), (b, t, p, d))
  question = jax.random.normal(jax.random.key(1), (b, lq, d))
  qmask = jnp.arange(lq)[None, :] < jnp.array([3, 0])[:, None]  # the second question is empty
  return visual, question, qmask


@pytest.mark.parametrize("block", [pytest.param(4, marks=pytest.mark.slow), 64])  # 4: ~20 s, slow
def test_blocked_attention_equals_plain_attention(block):
  ks = jax.random.split(jax.random.key(3), 4)
  q = jax.random.normal(ks[0], (2, 13, 4, 8))
  k, v = (jax.random.normal(kk, (2, 9, 2, 8)) for kk in ks[1:3])  # grouped KV heads
  valid = jax.random.bernoulli(ks[3], 0.6, (2, 9)).at[1].set(False)  # a row with no valid key
  want = jax.nn.dot_product_attention(q, k, v, mask=valid[:, None, None, :])
  got = blocked_attention(q, k, v, valid, block)
  np.testing.assert_allclose(got, want, atol=1e-5)
  grad = lambda f: jax.grad(lambda q: jnp.sum(jnp.sin(f(q))))(q)
  np.testing.assert_allclose(grad(lambda q: blocked_attention(q, k, v, valid, block)),
                             grad(lambda q: jax.nn.dot_product_attention(q, k, v, mask=valid[:, None, None, :])),
                             atol=1e-5)


def test_blocked_attention_rejects_bad_shapes():
  with pytest.raises(ValueError, match="q \\[B, Lq, H, D\\]"):
    blocked_attention(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 1, 4)), jnp.zeros((2, 3, 1, 4)))
  with pytest.raises(ValueError, match="block=0"):
    blocked_attention(jnp.zeros((1, 3, 1, 4)), jnp.zeros((1, 3, 1, 4)), jnp.zeros((1, 3, 1, 4)), block=0)


def test_policy_attention_is_the_old_module_with_the_same_parameters():
  x = jax.random.normal(jax.random.key(4), (2, 11, 16))
  ctx = jax.random.normal(jax.random.key(5), (2, 6, 16))
  valid = jnp.array([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], bool)
  new = pl.PolicyAttention(num_heads=4, features=16, block=4)
  params = new.init(jax.random.key(6), x, ctx, valid)["params"]
  old_params = old_attention(4, 16).init(jax.random.key(6), x, ctx, valid)["params"]
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(old_params)
  jax.tree.map(np.testing.assert_array_equal, params, old_params)  # same names, shapes and initial values
  for kv, mask in ((ctx, valid), (x, None)):
    np.testing.assert_allclose(new.apply({"params": params}, x, kv, mask),
                               old_attention(4, 16).apply({"params": params}, x, kv, mask), atol=1e-5)


@pytest.mark.slow  # ~20 s; keeps the default run under 15 minutes
def test_score_policy_outputs_and_parameters_unchanged(monkeypatch):
  visual, question, qmask = _inputs()  # self- and cross-attention, one question empty
  policy = pl.ScorePolicy(hidden=16, num_layers=2, num_heads=4, query_conditioned=True)
  args = (visual, question, qmask)
  params = policy.init(jax.random.key(2), *args)["params"]
  new_logits = policy.apply({"params": params}, *args)
  with monkeypatch.context() as m:
    with_old_attention(m)
    old_params = policy.init(jax.random.key(2), *args)["params"]
    old_logits = policy.apply({"params": params}, *args)  # an old checkpoint's tree loads as is
  jax.tree.map(np.testing.assert_array_equal, params, old_params)
  np.testing.assert_allclose(new_logits, old_logits, atol=1e-5)


def test_cacovid_layer_equals_qwen2_decoder_layer():
  cfg = cp.CaCoVIDPolicy(hidden=16, num_heads=4, num_kv_heads=2).layer_config(16)
  x = jax.random.normal(jax.random.key(7), (2, 10, 16))
  valid = jnp.arange(10)[None, :] < jnp.array([10, 6])[:, None]
  cos, sin = rope_cos_sin(jnp.broadcast_to(jnp.arange(10), (2, 10)), cfg.head_size, cfg.rope_theta)
  new = cp.PolicyDecoderLayer(cfg, block=3)
  params = new.init(jax.random.key(8), x, cos, sin, valid)["params"]
  old = Qwen2DecoderLayer(cfg)
  old_params = old.init(jax.random.key(8), x, cos, sin, attention_mask(valid, valid, causal=False))["params"]
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(old_params)
  want = old.apply({"params": params}, x, cos, sin, attention_mask(valid, valid, causal=False))[0]
  got, onto_visual = new.apply({"params": params}, x, cos, sin, valid)
  assert onto_visual is None  # asked for with n_visual > 0 only; it changes nothing else:
  with_logits, onto_visual = cp.PolicyDecoderLayer(cfg, block=3, n_visual=4).apply({"params": params}, x, cos,
                                                                                     sin, valid)
  np.testing.assert_array_equal(with_logits, got)
  assert onto_visual.shape == (2, cfg.num_attention_heads, 6, 4)
  # Padded queries attended to themselves in the old mask, to the valid keys now: only valid rows compare
  # (padded rows are never read by a visual output).
  np.testing.assert_allclose(got[0], want[0], atol=1e-5)
  np.testing.assert_allclose(got[1, :6], want[1, :6], atol=1e-5)


def policy_grad_temp_bytes(policy, n_frames: int = 32, tokens: int = 196, dim: int = 64) -> int:
  """XLA's temporary bytes of the compiled gradient of a loss on the policy's logits (one sample)."""
  visual = jax.ShapeDtypeStruct((1, n_frames, tokens, dim), jnp.float32)
  params = jax.eval_shape(lambda v: policy.init(jax.random.key(0), v)["params"], visual)

  def loss(p, v):
    return jnp.sum(jax.nn.log_softmax(policy.apply({"params": p}, v).reshape(-1)))
  compiled = jax.jit(jax.grad(loss)).lower(params, visual).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_policy_gradient_memory_at_6272_tokens_drops(monkeypatch, capsys):
  """The 7B config's policy (hidden 256, 4 heads, 1 layer) at 32 x 196 tokens: the old attention keeps
  [1, 4, 6272, 6272] float32 scores (629 MB) for the backward pass; the blocked one never holds them."""
  policy = pl.ScorePolicy(hidden=256, num_layers=1, num_heads=4)
  new = policy_grad_temp_bytes(policy)
  with monkeypatch.context() as m:
    with_old_attention(m)
    old = policy_grad_temp_bytes(policy)
  scores = 4 * 6272 * 6272 * 4
  with capsys.disabled():
    print(f"\npolicy gradient temporaries at 6272 tokens: old {old / 2**20:.0f} MiB, blocked {new / 2**20:.0f} MiB")
  assert old > scores  # the whole score tensor (at least) was live
  assert new < old / 4 and new < scores / 2
