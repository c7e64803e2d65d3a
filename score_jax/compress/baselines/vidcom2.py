"""VidCom2: per-frame budgets by frame uniqueness, then the tokens least similar to frame and video.

As in the authors' LLaVA-OV code: keep the half of the channels with the lowest variance, L2-normalise
tokens, and score every token by its multi-scale Gaussian similarity to the video centre (mean of all
tokens) and to its frame centre, sum_a exp(-|x - c|^2 / (2a)), a in {1/8, ..., 2}.
Frame uniqueness u_t = -mean_p sim_video; budget shares s_t = 1 + softmax(u / 0.01)_t - 1/T (outlier frames
get more tokens); within a frame keep the tokens with the lowest sim_video + sim_frame (distinctive
details, e.g. the parts that change). Adaptation for static shapes: the per-frame budgets are rounded
to integers that sum exactly to k (`round_quotas`, at least 1 and at most P per frame) instead of the
original per-frame rounding, whose total drifts.
Reference: Liu et al., "Video Compression Commander: Plug-and-Play Inference Acceleration for
Video Large Language Models", EMNLP 2025.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.quota import quota_topk_indices, round_quotas

ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)


def low_variance_channels(x: jnp.ndarray, ratio: float = 0.5) -> jnp.ndarray:
  """[B, N, d] -> [B, N, int(d * ratio)]: the channels with the lowest variance over tokens."""
  var = jnp.var(x, axis=1)
  keep = max(int(x.shape[-1] * ratio), 1)
  _, idx = jax.lax.top_k(-var, keep)
  return jnp.take_along_axis(x, idx[:, None, :], axis=-1)


def gaussian_similarity(x: jnp.ndarray, centre: jnp.ndarray) -> jnp.ndarray:
  d2 = jnp.sum((x - centre) ** 2, axis=-1)
  return sum(jnp.exp(-d2 / (2 * a)) for a in ALPHAS)


def vidcom2_scores(visual: jnp.ndarray, temp: float = 0.01):
  """(frame budget shares [B, T] summing to 1, token scores [B, T, P], higher = keep)."""
  b, t, p, d = visual.shape
  x = low_variance_channels(visual.reshape(b, t * p, d).astype(jnp.float32)).reshape(b, t, p, -1)
  x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  sim_v = gaussian_similarity(x, jnp.mean(x, axis=(1, 2), keepdims=True))
  sim_f = gaussian_similarity(x, jnp.mean(x, axis=2, keepdims=True))
  u = -jnp.mean(sim_v, axis=-1)
  probs = jax.nn.softmax((u - jnp.max(u, axis=-1, keepdims=True)) / temp, axis=-1)
  shares = 1.0 + probs - 1.0 / t
  return shares / jnp.sum(shares, axis=-1, keepdims=True), -(sim_v + sim_f)


@register_selector("vidcom2")
def vidcom2_select(visual, k: int, *, key=None, extras=None):
  del key
  temp = (extras or {}).get("temperature", 0.01)
  b, t, p, _ = visual.shape
  if not 1 <= k <= t * p:
    raise ValueError(f"vidcom2: k={k} must be in [1, {t * p}].")
  shares, scores = vidcom2_scores(visual, temp)
  quotas = round_quotas(shares, k, 1 if k >= t else 0, p)
  return quota_topk_indices(scores, quotas, k)
