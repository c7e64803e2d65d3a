"""Per-frame token quotas with static shapes: exact-total integer budgets and quota-limited top-k.

Several compressors (CaCoVID inference, VidCom2, stratified random, frame-mode rollouts) give every
frame its own number of tokens q_t (data dependent) while the total k stays a Python int, so the
kept set can still be returned as static-shape indices [B, k] in ascending (temporal) order.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def even_quotas(total: int, t: int) -> np.ndarray:
  """Static split of `total` over `t` frames: total // t each, the first total % t get one more."""
  if total < 0 or t < 1:
    raise ValueError(f"even_quotas needs total >= 0 and t >= 1; got total={total}, t={t}.")
  q = np.full((t,), total // t, np.int32)
  q[:total % t] += 1
  return q


def split_quotas(method: str, k: int, t: int, p: int, frac: float) -> tuple[np.ndarray, np.ndarray]:
  """Static per-frame (int(q_t * frac) [T], the rest [T]) counts of frame t's even share q_t of k
  (`even_quotas`), for merging compressors that split each frame's budget in two; `method` names the
  caller in errors."""
  if not 1 <= k <= t * p:
    raise ValueError(f"{method}: k={k} must be in [1, {t * p}].")
  if not 0.0 <= frac <= 1.0:
    raise ValueError(f"{method}: fraction {frac} must be in [0, 1].")
  q = even_quotas(k, t)
  part = np.floor(q * frac + 1e-9).astype(np.int32)
  return part, q - part


def mask_to_indices(mask: jnp.ndarray, k: int) -> jnp.ndarray:
  """bool [..., N] with exactly k True entries -> int32 [..., k] ascending indices.

  If fewer than k entries are True the tail is padded with N (out of range); callers guarantee k.
  """
  n = mask.shape[-1]
  key = jnp.where(mask, jnp.arange(n, dtype=jnp.int32), n)
  _, idx = jax.lax.top_k(-key, k)  # the k smallest keys, in ascending order
  return jnp.take_along_axis(key, idx, axis=-1).astype(jnp.int32)


def rank_within(scores: jnp.ndarray) -> jnp.ndarray:
  """int32 rank of every entry along the last axis, 0 = largest (ties: lower index first)."""
  order = jnp.argsort(-scores, axis=-1, stable=True)
  return jnp.argsort(order, axis=-1).astype(jnp.int32)


def quota_mask(scores: jnp.ndarray, quotas: jnp.ndarray) -> jnp.ndarray:
  """bool [B, T, P]: the quotas[b, t] highest-scoring tokens of every frame."""
  return rank_within(scores) < quotas[..., None]


def quota_topk_indices(scores: jnp.ndarray, quotas: jnp.ndarray, k: int) -> jnp.ndarray:
  """Scores [B, T, P], integer quotas [B, T] summing to k -> flat ascending indices [B, k]."""
  b, t, p = scores.shape
  return mask_to_indices(quota_mask(scores, quotas).reshape(b, t * p), k)


def round_quotas(p: jnp.ndarray, total: int, lo: int, hi: int, scale: float | None = None) -> jnp.ndarray:
  """Integer quotas [..., T] with sum exactly `total`, each in [lo, hi].

  q = clip(round(p * scale), lo, hi) (scale defaults to total), then one-token corrections: while
  the sum is too large take one from the largest quota above lo, while too small give one to the
  smallest quota below hi (ties: the first frame), as CaCoVID's evaluation code does. Runs as a
  `lax.while_loop` (at most T * (hi - lo) steps), so it jits and vmaps.
  """
  t = p.shape[-1]
  if not t * lo <= total <= t * hi:
    raise ValueError(f"round_quotas: total={total} is not reachable with {t} frames in [{lo}, {hi}].")
  s = float(total if scale is None else scale)
  q0 = jnp.clip(jnp.round(p.astype(jnp.float32) * s), lo, hi).astype(jnp.int32)

  def fix(q):
    def body(q):
      diff = jnp.sum(q) - total
      big = jnp.argmax(jnp.where(q > lo, q, -1))
      small = jnp.argmin(jnp.where(q < hi, q, hi + 1))
      return jnp.where(diff > 0, q.at[big].add(-1), q.at[small].add(1))
    return jax.lax.while_loop(lambda q: jnp.sum(q) != total, body, q)

  flat = q0.reshape(-1, t)
  return jax.vmap(fix)(flat).reshape(q0.shape)
