"""Attention implementations (score_jax/models/attention.py): the fused kernels' layout (causal + lengths over
packed rows) equals the dense-mask path on CPU, and "auto" falls back to XLA where no fused kernel exists."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.models import attention
from score_jax.models.configs import Qwen2Config
from score_jax.models.qwen2 import Qwen2

TINY = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                   num_key_value_heads=2, tie_word_embeddings=True)


@pytest.mark.parametrize("backend,dtype,head,want", [
    ("cpu", jnp.float32, 64, "xla"), ("cpu", jnp.bfloat16, 64, "xla"), ("gpu", jnp.bfloat16, 64, "cudnn"),
    ("gpu", jnp.float16, 128, "cudnn"), ("gpu", jnp.float32, 64, "xla"), ("gpu", jnp.bfloat16, 72, "cudnn"),
    ("gpu", jnp.bfloat16, 256, "xla"), ("gpu", jnp.bfloat16, 20, "xla"), ("tpu", jnp.bfloat16, 128, "splash")])
def test_auto_picks_the_fused_kernel_only_where_it_exists(backend, dtype, head, want):
  assert attention.resolve_implementation("auto", dtype, head, backend) == want


def test_explicit_kernels_on_the_wrong_backend_fail_with_a_clear_error():
  with pytest.raises(ValueError, match="'cudnn' needs a GPU"):
    attention.resolve_implementation("cudnn", jnp.bfloat16, 64, "cpu")
  with pytest.raises(ValueError, match="bfloat16/float16, not float32"):
    attention.resolve_implementation("cudnn", jnp.float32, 64, "gpu")
  with pytest.raises(ValueError, match="'splash' needs a TPU"):
    attention.resolve_implementation("splash", jnp.bfloat16, 64, "cpu")
  with pytest.raises(ValueError, match="expected one of"):
    attention.resolve_implementation("flash", jnp.float32, 64, "cpu")
  assert attention.resolve_implementation("splash_interpret", jnp.float32, 64, "cpu") == "splash_interpret"


def test_pack_valid_moves_valid_tokens_first_in_order_and_unpack_inverts_it():
  valid = jnp.asarray([[1, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 0, 0]], bool)
  order, lengths = attention.pack_valid(valid)
  np.testing.assert_array_equal(lengths, [4, 6, 2])
  np.testing.assert_array_equal(order[0], [0, 2, 3, 5, 1, 4])
  np.testing.assert_array_equal(order[1], np.arange(6))
  np.testing.assert_array_equal(order[2, :2], [1, 2])
  x = jnp.arange(3 * 6 * 2, dtype=jnp.float32).reshape(3, 6, 2)
  np.testing.assert_array_equal(attention.unpack(attention.take_rows(x, order), order), x)


# Padded keep slots in the middle (adaptive budgets) and right-padded text: not a prefix of valid tokens.
VALID = np.ones((3, 40), bool)
VALID[0, 5:9] = False
VALID[0, 33:] = False
VALID[1, 10:30:3] = False
VALID[2, 37:] = False


@functools.lru_cache(maxsize=None)
def _hidden(impl, dtype, seed=0):
  valid = jnp.asarray(VALID)
  model = Qwen2(TINY, dtype=dtype, param_dtype=jnp.float32, attention=impl)
  b, l = valid.shape
  rng = np.random.default_rng(seed)
  embeds = jnp.asarray(rng.normal(size=(b, l, TINY.hidden_size)), jnp.float32)
  positions = jnp.asarray(np.cumsum(rng.integers(1, 3, (b, l)), axis=1), jnp.int32)  # gaps: "original" ids
  params = Qwen2(TINY).init(jax.random.key(1), embeds, positions)
  return np.asarray(jax.jit(lambda p: model.apply(p, embeds, positions, valid))(params), np.float32)


@pytest.mark.parametrize("impl", ["xla_lengths", "splash_interpret"])
def test_packed_causal_lengths_equal_the_dense_mask_on_every_valid_token(impl):
  want = _hidden("xla", jnp.float32)
  got = _hidden(impl, jnp.float32)
  np.testing.assert_allclose(got[VALID], want[VALID], atol=2e-5, rtol=2e-5)
  assert np.isfinite(got).all()


def test_bfloat16_compute_keeps_float32_softmax_statistics():
  """bf16 through the packed path stays as close to float32 as the dense bf16 path does."""
  ref = _hidden("xla", jnp.float32)
  dense = _hidden("xla", jnp.bfloat16)
  packed = _hidden("xla_lengths", jnp.bfloat16)
  err_dense = np.abs(dense[VALID] - ref[VALID]).max()
  err_packed = np.abs(packed[VALID] - ref[VALID]).max()
  assert err_packed <= 2 * err_dense + 1e-3, (err_packed, err_dense)
  assert err_packed < 0.1


def test_splash_pads_rows_to_its_block_and_handles_grouped_heads():
  rng = np.random.default_rng(0)
  b, l, h, hkv, d = 2, 130, 4, 2, 16  # 130 rows: padded to 256 inside
  q = jnp.asarray(rng.normal(size=(b, l, h, d)), jnp.float32)
  k, v = (jnp.asarray(rng.normal(size=(b, l, hkv, d)), jnp.float32) for _ in range(2))
  lengths = jnp.asarray([130, 77], jnp.int32)
  got = attention.multihead_attention(q, k, v, attention.CausalLengths(lengths), "splash_interpret")
  valid = jnp.arange(l)[None, :] < lengths[:, None]
  want = attention.multihead_attention(q, k, v, attention.attention_mask(valid, valid, causal=True), "xla")
  np.testing.assert_allclose(np.asarray(got)[np.asarray(valid)], np.asarray(want)[np.asarray(valid)], atol=2e-5)
