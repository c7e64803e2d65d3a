"""The first layers of the frozen Qwen2 decoder, and one layer's queries and keys, from the LLaVA params.

Inner-LLM baselines (FastV, PyramidDrop) rank visual tokens by the attention one layer pays them. Rebuilding
that attention from the layer's Q and K (one row per query of interest) avoids asking the fused attention
kernel for its [L, L] weights. The stacked (`nn.scan`) layer parameters are sliced and applied one layer at
a time with the very `Qwen2DecoderLayer` the model uses, so results match `prefill.decode`.
Reference: Chen et al., "An Image is Worth 1/2 Tokens After Layer 2" (FastV), ECCV 2024.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.models.attention import attention_mask
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.prefill import PrefillInputs
from score_jax.models.qwen2 import Qwen2DecoderLayer, RMSNorm
from score_jax.models.rope import apply_rope, rope_cos_sin


def layer_params(params, i: int):
  """Parameters of decoder layer i (un-stacked from the scanned `layers` collection)."""
  return jax.tree_util.tree_map(lambda x: x[i], params["language_model"]["layers"])


def _rope(model: LlavaOnevision, positions: jnp.ndarray):
  cfg = model.cfg.text
  return rope_cos_sin(positions, cfg.head_size, cfg.rope_theta)


def forward_layers(model: LlavaOnevision, params, inputs: PrefillInputs, num_layers: int,
                   start: int = 0, x: jnp.ndarray | None = None) -> jnp.ndarray:
  """Residual stream [B, L, d] after decoder layers `start`..`num_layers - 1` (no final norm), from
  the input embeddings, or from `x` (the stream entering layer `start`)."""
  cfg = model.cfg.text
  if not 0 <= start <= num_layers <= cfg.num_hidden_layers:
    raise ValueError(f"Need 0 <= start={start} <= num_layers={num_layers} <= {cfg.num_hidden_layers}.")
  cos, sin = _rope(model, inputs.positions)
  mask = attention_mask(inputs.valid, inputs.valid, causal=True)
  layer = Qwen2DecoderLayer(cfg, dtype=model.dtype, param_dtype=model.param_dtype)
  x = inputs.embeds.astype(model.dtype) if x is None else x
  for i in range(start, num_layers):
    x, _ = layer.apply({"params": layer_params(params, i)}, x, cos, sin, mask)
  return x


def final_norm(model: LlavaOnevision, params, x: jnp.ndarray) -> jnp.ndarray:
  """The decoder's final RMSNorm: `forward_layers` over every layer, then this, equals `prefill.decode`."""
  return RMSNorm(model.cfg.text.rms_norm_eps, model.param_dtype).apply(
      {"params": params["language_model"]["norm"]}, x)


def _rms_norm(x: jnp.ndarray, scale: jnp.ndarray, eps: float) -> jnp.ndarray:
  xf = x.astype(jnp.float32)
  return xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps) * scale.astype(jnp.float32)


def layer_query_key(model: LlavaOnevision, params, hidden: jnp.ndarray, positions: jnp.ndarray, layer: int):
  """RoPE'd queries [B, L, H, D] and keys [B, L, Hkv, D] (float32) of decoder layer `layer` on its input."""
  cfg = model.cfg.text
  p = layer_params(params, layer)
  h = _rms_norm(hidden, p["input_layernorm"]["scale"], cfg.rms_norm_eps)
  attn = p["self_attn"]
  proj = lambda name: h @ attn[name]["kernel"].astype(jnp.float32) + attn[name]["bias"].astype(jnp.float32)
  b, l, _ = hidden.shape
  q = proj("q_proj").reshape(b, l, cfg.num_attention_heads, cfg.head_size)
  k = proj("k_proj").reshape(b, l, cfg.num_key_value_heads, cfg.head_size)
  cos, sin = _rope(model, positions)
  return apply_rope(q, cos, sin), apply_rope(k, cos, sin)


def attention_rows(q: jnp.ndarray, k: jnp.ndarray, query_pos: jnp.ndarray, key_allowed: jnp.ndarray) -> jnp.ndarray:
  """Head-averaged softmax attention of selected query rows: [B, Lq, L] (float32).

  q: [B, Lq, H, D] queries of interest; k: [B, L, Hkv, D] all keys (grouped heads repeated);
  query_pos: int [B, Lq] sequence index of each query (causal: keys at index <= it);
  key_allowed: bool [B, L] valid keys.
  """
  h, hkv = q.shape[2], k.shape[2]
  k = jnp.repeat(k, h // hkv, axis=2)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(q.shape[-1]))
  allowed = key_allowed[:, None, :] & (jnp.arange(k.shape[1])[None, None, :] <= query_pos[:, :, None])
  logits = jnp.where(allowed[:, None], logits, -jnp.inf)
  return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=1)
