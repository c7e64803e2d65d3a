"""Memory-efficient softmax attention for the policies: queries in blocks, each block recomputed in the
backward pass.

`jax.nn.dot_product_attention` alone materialises the [B, heads, Lq, Lk] float32 scores, and autodiff
keeps them (the softmax) for the backward pass: about 0.6 GB per sample and head group at 32 x 196 =
6272 tokens. Here the queries are cut into blocks of `block` rows, mapped with `lax.map`, and each
block is a `jax.checkpoint`: at most one block's [B, heads, block, Lk] scores exist at a time, forward
or backward (Rabe & Staats, "Self-attention does not need O(n^2) memory", arXiv 2112.05682).
Every query row still takes one exact softmax over all its keys, so the result equals plain attention
up to float rounding.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

DEFAULT_BLOCK = 256  # query rows per block: [B, H, 256, 6528] float32 scores, 6.7 MB per sample and head


def blocked_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, key_valid: jnp.ndarray | None = None,
                      block: int = DEFAULT_BLOCK) -> jnp.ndarray:
  """Softmax attention, q [B, Lq, H, D], k/v [B, Lk, Hkv, D] (H a multiple of Hkv) -> [B, Lq, H, D].

  `key_valid` [B, Lk] masks keys out (a row with no valid key attends uniformly, as
  `jax.nn.dot_product_attention` does). Scale 1/sqrt(D); computed in the inputs' dtype.
  """
  if q.ndim != 4 or k.ndim != 4 or v.shape != k.shape:
    raise ValueError(f"blocked_attention needs q [B, Lq, H, D] and k, v [B, Lk, Hkv, D]; got {q.shape}, "
                     f"{k.shape}, {v.shape}.")
  if block < 1:
    raise ValueError(f"block={block} must be >= 1.")
  b, lq, h, d = q.shape
  mask = None if key_valid is None else key_valid.astype(bool)[:, None, None, :]  # [B, 1, 1, Lk]

  @jax.checkpoint
  def attend(qb):  # [B, block, H, D] -> same
    return jax.nn.dot_product_attention(qb, k, v, mask=mask, implementation="xla")

  if lq <= block:
    return attend(q)
  nb = -(-lq // block)
  pad = nb * block - lq
  qp = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0))) if pad else q
  blocks = qp.reshape(b, nb, block, h, d).swapaxes(0, 1)  # [nb, B, block, H, D]
  out = jax.lax.map(attend, blocks).swapaxes(0, 1).reshape(b, nb * block, h, d)
  return out[:, :lq]
