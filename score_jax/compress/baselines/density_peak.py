"""Density-peak diversity selection (DPC-kNN), per frame: CaCoVID's "content" rollout rule.

Every token gets density rho = exp(-mean of squared distances to its knn nearest tokens, itself
included) and delta = distance to the nearest token of higher density (the largest distance of the
set for the densest token); the score rho * delta is high for tokens that are both typical (dense)
and far from denser ones (cluster peaks), so the top-k cover the frame's distinct contents.
Distances are Euclidean / sqrt(d), as in CaCoVID's `div_sample` and TCFormer's DPC-kNN.
Reference: Rodriguez & Laio, Science 2014 (density peaks); CaCoVID (arXiv 2602.01649); FastVID DTM.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.quota import even_quotas, quota_topk_indices


def pairwise_distance(x: jnp.ndarray) -> jnp.ndarray:
  """[..., M, d] -> Euclidean distances / sqrt(d) [..., M, M] (float32)."""
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1)
  d2 = sq[..., :, None] + sq[..., None, :] - 2.0 * jnp.einsum("...id,...jd->...ij", x, x)
  return jnp.sqrt(jnp.maximum(d2, 0.0) / x.shape[-1])


def density_peak_scores(x: jnp.ndarray, knn: int = 4, noise: jnp.ndarray | None = None) -> jnp.ndarray:
  """Density-peak scores rho * delta: tokens [..., M, d] -> [..., M].

  `noise` (optional, [..., M], e.g. 1e-6 * uniform) breaks density ties as CaCoVID's random jitter
  does; without it exact ties go to the lower index.
  """
  m = x.shape[-2]
  if not 1 <= knn <= m:
    raise ValueError(f"density_peak_scores: knn={knn} must be in [1, {m}] tokens.")
  dist = pairwise_distance(x)
  nearest = -jax.lax.top_k(-dist, knn)[0]  # knn smallest distances (self included)
  density = jnp.exp(-jnp.mean(nearest ** 2, axis=-1))
  if noise is None:  # relative tie-break: never reorders densities that differ by more than 1e-6
    density = density * (1.0 - 1e-6 * jnp.arange(m) / m)
  else:
    density = density + noise
  denser = density[..., None, :] > density[..., :, None]  # [i, j]: j denser than i
  dist_max = jnp.max(dist, axis=(-2, -1), keepdims=True)
  delta = jnp.min(jnp.where(denser, dist, dist_max), axis=-1)
  return delta * density


def density_peak_frame_scores(visual: jnp.ndarray, knn: int = 4) -> jnp.ndarray:
  """Per-frame density-peak scores: [B, T, P, d] -> [B, T, P]."""
  return density_peak_scores(visual, knn)


@register_selector("density_peak")
def density_peak_select(visual, k: int, *, key=None, extras=None):
  """k tokens split evenly over frames (first frames get the remainder), top density peaks in each."""
  del key
  knn = (extras or {}).get("knn", 4)
  b, t, p, _ = visual.shape
  quotas = jnp.broadcast_to(jnp.asarray(even_quotas(k, t)), (b, t))
  return quota_topk_indices(density_peak_frame_scores(visual, min(knn, p)), quotas, k)
