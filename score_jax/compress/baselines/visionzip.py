"""VisionZip, video-adapted for LLaVA-OneVision: dominant tokens by attention received + contextual tokens.

Dominant (share `dominant_frac`, VisionZip's 54 of 64): in every frame, the tokens that receive the
most attention. VisionZip reads a late ViT layer's [CLS] attention; SigLIP has no [CLS] and the
selector only sees the LLM-space visual tokens, so the proxy is the mean over queries of
softmax(x x^T / sqrt(d)) within the frame (self-attention of the tokens themselves).
Contextual (the rest): `k_ctx` centres evenly spaced (step R // k_ctx) over the R non-dominant tokens in
temporal order; every other non-dominant token joins its most cosine-similar centre.
Outputs: `visionzip_select` (registered "visionzip") returns dominant + centre indices, i.e. each
contextual token is represented by its centre, an original token; `visionzip_tokens` also returns
the merged features, the centre slot holding the mean of its cluster (centre + members; VisionZip
adds target and member mean instead), positioned at the centre's original index.
Reference: Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models",
CVPR 2025.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.quota import even_quotas, mask_to_indices, quota_mask

DOMINANT_FRAC = 54 / 64


def attention_received(visual: jnp.ndarray) -> jnp.ndarray:
  """Mean attention each token receives within its frame: [B, T, P, d] -> [B, T, P]."""
  x = visual.astype(jnp.float32)
  logits = jnp.einsum("btqd,btkd->btqk", x, x) / np.sqrt(x.shape[-1])
  return jnp.mean(jax.nn.softmax(logits, axis=-1), axis=-2)


def _split(k: int, t: int, n: int, dominant_frac: float) -> tuple[int, int]:
  if not 1 <= k <= n:
    raise ValueError(f"visionzip: k={k} must be in [1, {n}].")
  k_dom = min(max(int(round(k * dominant_frac)), 1), k)
  return k_dom, k - k_dom


def visionzip_tokens(visual: jnp.ndarray, k: int, dominant_frac: float = DOMINANT_FRAC):
  """(indices [B, k] ascending, tokens [B, k, d]): dominant tokens as they are, centres' slots merged."""
  b, t, p, d = visual.shape
  n = t * p
  k_dom, k_ctx = _split(k, t, n, dominant_frac)
  quotas = jnp.broadcast_to(jnp.asarray(even_quotas(k_dom, t)), (b, t))
  dom = quota_mask(attention_received(visual), quotas).reshape(b, n)
  flat = visual.reshape(b, n, d)
  if k_ctx == 0:
    idx = mask_to_indices(dom, k)
    return idx, jnp.take_along_axis(flat, idx[..., None], axis=1)
  r = n - k_dom
  rest = mask_to_indices(~dom, r)  # [B, R] non-dominant tokens in temporal order
  step = max(r // k_ctx, 1)
  centre_pos = np.arange(k_ctx) * step
  centres = rest[:, centre_pos]  # [B, k_ctx]
  x_rest = jnp.take_along_axis(flat, rest[..., None], axis=1).astype(jnp.float32)
  unit = x_rest / jnp.maximum(jnp.linalg.norm(x_rest, axis=-1, keepdims=True), 1e-6)
  sim = jnp.einsum("brd,bcd->brc", unit, unit[:, centre_pos])
  assign = jnp.argmax(sim, axis=-1).at[:, centre_pos].set(jnp.arange(k_ctx))  # a centre is its own cluster
  onehot = jax.nn.one_hot(assign, k_ctx, dtype=jnp.float32)  # [B, R, k_ctx]
  merged = jnp.einsum("brc,brd->bcd", onehot, x_rest) / jnp.sum(onehot, axis=1)[..., None]
  keep = dom.at[jnp.arange(b)[:, None], centres].set(True)
  idx = mask_to_indices(keep, k)
  feats = jnp.take_along_axis(flat, idx[..., None], axis=1)
  # Replace each centre slot by its cluster mean: slot j of idx is centre c when idx[j] == centres[c].
  is_centre = idx[:, :, None] == centres[:, None, :]  # [B, k, k_ctx]
  merged_at = jnp.einsum("bkc,bcd->bkd", is_centre.astype(jnp.float32), merged)
  feats = jnp.where(jnp.any(is_centre, axis=-1)[..., None], merged_at.astype(feats.dtype), feats)
  return idx, feats


@register_selector("visionzip")
def visionzip_select(visual, k: int, *, key=None, extras=None):
  del key
  frac = (extras or {}).get("dominant_frac", DOMINANT_FRAC)
  return visionzip_tokens(visual, k, frac)[0]
