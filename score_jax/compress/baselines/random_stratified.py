"""Stratified random pruning: k // T random tokens in every frame, one more in k % T random frames.

Reference: the "random" baseline of VidCom2 (EMNLP'25) / VTC-Bench, stratified per frame as in
the baselines notes (keeps temporal coverage; average over 3+ seeds).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.quota import even_quotas, quota_topk_indices


@register_selector("random_stratified")
def random_stratified_select(visual, k: int, *, key, extras=None):
  del extras
  b, t, p, _ = visual.shape
  if k > t * p:
    raise ValueError(f"random_stratified: k={k} > {t * p} tokens.")
  u = jax.random.uniform(key, (b, t, p + 1))  # token noise, plus one value per frame to shuffle frames
  base = jnp.asarray(even_quotas(k, t))  # extras sit on the first k % T frames ...
  quotas = base[jnp.argsort(u[..., p], axis=-1)]  # ... which a random permutation moves to random frames
  return quota_topk_indices(u[..., :p], quotas, k)
