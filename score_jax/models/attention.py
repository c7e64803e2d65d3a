"""Multi-head attention core shared by the decoder and the vision tower."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def attention_mask(query_valid: jnp.ndarray | None, key_valid: jnp.ndarray, causal: bool) -> jnp.ndarray:
  """Boolean mask [B, 1, Lq, Lk]: key must be valid and, if causal, not after the query."""
  b, lk = key_valid.shape
  mask = jnp.broadcast_to(key_valid[:, None, None, :], (b, 1, lk, lk))
  if causal:
    mask = mask & jnp.tril(jnp.ones((lk, lk), dtype=bool))[None, None]
  if query_valid is not None:
    # Fully masked rows (padding queries) attend to themselves so the softmax stays finite.
    eye = jnp.eye(lk, dtype=bool)[None, None]
    mask = mask | (~query_valid[:, None, :, None] & eye)
  return mask


def multihead_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                        mask: jnp.ndarray | None) -> jnp.ndarray:
  """Softmax attention with grouped KV heads. q [B, L, H, D], k/v [B, S, Hkv, D] -> [B, L, H, D]."""
  return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
