"""Qwen2 decoder (RMSNorm, RoPE, grouped-query attention, SwiGLU) as a Flax Linen module.

Parameter names follow the Hugging Face module names so that checkpoint mapping is a small table
(see `hf_loading.py`). Decoder layers are stacked along a leading `layers` axis with `nn.scan`, which
keeps compile time flat in depth.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from score_jax.models import attention as attn_lib
from score_jax.models.attention import attention_mask, multihead_attention
from score_jax.models.configs import Qwen2Config
from score_jax.models.rope import apply_rope, rope_cos_sin


class RMSNorm(nn.Module):
  eps: float = 1e-6
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    xf = x.astype(jnp.float32)
    xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
    return scale.astype(x.dtype) * xf.astype(x.dtype)


class Qwen2Attention(nn.Module):
  cfg: Qwen2Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention: str = "xla"  # a resolved implementation (see `score_jax.models.attention`)

  @nn.compact
  def __call__(self, x, cos, sin, mask, cache=None, index=None):
    """Attention output [B, L, d]; with a KV `cache` (k, v [B, S, Hkv, D]) the new keys and values are
    written at slots `index`..`index + L - 1`, the queries attend to the whole cache (`mask` [B, 1, L, S])
    and (output, updated cache) is returned."""
    cfg = self.cfg
    b, l, _ = x.shape
    hd = cfg.head_size
    dense = lambda n, bias, name: nn.Dense(n, use_bias=bias, name=name, dtype=self.dtype,
                                           param_dtype=self.param_dtype)
    q = dense(cfg.num_attention_heads * hd, True, "q_proj")(x).reshape(b, l, -1, hd)
    k = dense(cfg.num_key_value_heads * hd, True, "k_proj")(x).reshape(b, l, -1, hd)
    v = dense(cfg.num_key_value_heads * hd, True, "v_proj")(x).reshape(b, l, -1, hd)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    if cache is not None:
      k, v = (jax.lax.dynamic_update_slice_in_dim(c, new.astype(c.dtype), index, axis=1)
              for c, new in zip(cache, (k, v)))
    out = multihead_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask, self.attention).reshape(b, l, -1)
    out = dense(cfg.hidden_size, False, "o_proj")(out)
    return out if cache is None else (out, (k, v))


class Qwen2MLP(nn.Module):
  cfg: Qwen2Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    dense = lambda n, name: nn.Dense(n, use_bias=False, name=name, dtype=self.dtype,
                                     param_dtype=self.param_dtype)
    gate = dense(self.cfg.intermediate_size, "gate_proj")(x)
    up = dense(self.cfg.intermediate_size, "up_proj")(x)
    return dense(self.cfg.hidden_size, "down_proj")(nn.silu(gate) * up)


class Qwen2DecoderLayer(nn.Module):
  cfg: Qwen2Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention: str = "xla"

  @nn.compact
  def __call__(self, x, cos, sin, mask, cache=None, index=None):
    """(output, None), or (output, updated cache) with a KV `cache` (see `Qwen2Attention`)."""
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    eps = self.cfg.rms_norm_eps
    h = RMSNorm(eps, self.param_dtype, name="input_layernorm")(x)
    attn = Qwen2Attention(self.cfg, name="self_attn", attention=self.attention, **kw)(h, cos, sin, mask, cache,
                                                                                         index)
    attn, cache = attn if cache is not None else (attn, None)
    x = x + attn
    h = RMSNorm(eps, self.param_dtype, name="post_attention_layernorm")(x)
    x = x + Qwen2MLP(self.cfg, name="mlp", **kw)(h)
    return x, cache


class Qwen2(nn.Module):
  """Qwen2 causal LM. Methods: `embed`, `__call__` (hidden states), `logits`.

  `attention`: one of `score_jax.models.attention.IMPLEMENTATIONS`, resolved for the backend at trace
  time. `__call__` runs every implementation (the fused ones on packed rows, `attn_lib.pack_valid`);
  `with_cache` (generation, explicit dense masks) takes XLA's."""
  cfg: Qwen2Config
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention: str = attn_lib.DEFAULT_IMPLEMENTATION

  def setup(self):
    cfg = self.cfg
    self.embed_tokens = nn.Embed(cfg.vocab_size, cfg.hidden_size, dtype=self.dtype,
                                 param_dtype=self.param_dtype)
    self.impl = attn_lib.resolve_implementation(self.attention, self.dtype, cfg.head_size)
    self.layers = nn.scan(
        Qwen2DecoderLayer, variable_axes={"params": 0}, split_rngs={"params": True},
        in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0, nn.broadcast), length=cfg.num_hidden_layers,
    )(cfg, dtype=self.dtype, param_dtype=self.param_dtype, attention=self.impl)
    self.norm = RMSNorm(cfg.rms_norm_eps, self.param_dtype)
    if not cfg.tie_word_embeddings:
      self.lm_head = nn.Dense(cfg.vocab_size, use_bias=False, dtype=self.dtype,
                              param_dtype=self.param_dtype)

  def embed(self, ids):
    return self.embed_tokens(ids)

  def __call__(self, embeds, positions, valid=None):
    """Final-normed hidden states [B, L, d] for input embeddings, integer positions and validity."""
    b, l, _ = embeds.shape
    if valid is None:
      valid = jnp.ones((b, l), dtype=bool)
    x = embeds.astype(self.dtype)
    packed = attn_lib.takes_lengths(self.impl)
    if packed:  # the fused kernels' layout: valid tokens first (their positions move with them)
      order, lengths = attn_lib.pack_valid(valid)
      x, positions = attn_lib.take_rows(x, order), attn_lib.take_rows(positions, order)
      mask = attn_lib.CausalLengths(lengths)
    else:
      mask = attention_mask(valid, valid, causal=True)
    cos, sin = rope_cos_sin(positions, self.cfg.head_size, self.cfg.rope_theta)
    x, _ = self.layers(x, cos, sin, mask, None, None)
    return self.norm(attn_lib.unpack(x, order) if packed else x)

  def with_cache(self, embeds, positions, mask, cache=None, index=0):
    """Final-normed hidden states [B, L, d] under an explicit attention `mask`, and the KV cache.

    Without `cache`: `mask` is [B, 1, L, L] and the result is (hidden, None). With `cache` (k, v, each
    [layers, B, S, Hkv, D]): the L new tokens are written at slots `index`.. of every layer's cache,
    `mask` is [B, 1, L, S] over the updated cache, and the result is (hidden, updated cache)."""
    cos, sin = rope_cos_sin(positions, self.cfg.head_size, self.cfg.rope_theta)
    x, cache = self.layers(embeds.astype(self.dtype), cos, sin, mask, cache, index)
    return self.norm(x), cache

  def logits(self, hidden):
    if self.cfg.tie_word_embeddings:
      return self.embed_tokens.attend(hidden)
    return self.lm_head(hidden)
