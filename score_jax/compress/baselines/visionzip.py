"""VisionZip, video-adapted for LLaVA-OneVision: dominant tokens by attention received + merged contextual tokens.

Registered "visionzip" (a compressor, `visionzip_compress`), as VisionZip's LLaVA-OneVision port in HoliTom's
repository (cokeshao/HoliTom@e9b2972f, visionzip/llava_arch.py and the SigLIP tower in
LLaVA-NeXT/llava/model/multimodal_encoder/siglip_encoder.py), frame by frame: frame t's share q_t of the
budget k (`even_quotas`) is int(q_t * 54/64) dominant tokens (VisionZip's 54 of 64) and the rest contextual.
- Dominant: the tokens that receive the most attention. VisionZip's CLIP code (dvlab-research/VisionZip@3151f6df,
  visionzip/clip_encoder.py) reads the [CLS] row of the penultimate ViT layer; SigLIP has no [CLS], so the
  LLaVA-OV port takes the last SigLIP layer's attention averaged over heads and over queries (attention
  received), pooled 2x2 to the LLM grid. The compressors here see only the LLM-space visual tokens, so the
  score is that average over queries of softmax(x x^T / sqrt(d)) among the frame's own tokens
  (`attention_received`).
- Contextual: c_t targets evenly spaced (step (P - dominant) // c_t) over the frame's non-dominant tokens in
  order; every other non-dominant token joins its most cosine-similar target of the same frame (VisionZip uses
  the layer's head-averaged keys as the metric; here the tokens themselves). A contextual token is, as in both
  codes, target + mean of its members (the target alone when it has none); `merge="mean"` gives the plain
  cluster mean (target and members) instead. It takes the position of its target token (the port's
  "grid" layout sorts dominant and contextual tokens by those positions).
Exactly k tokens, all valid, at their own / their target's original index.

Registered "visionzip_select" (a selector: the previous registered "visionzip", unchanged): dominant share
round(k * 54/64) split evenly over frames, then `k_ctx` centres evenly spaced (step R // k_ctx) over the R
non-dominant tokens of the whole video, each represented by the centre itself (no merging); `visionzip_tokens`
also returns those centres' cluster means.
Reference: Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models", CVPR 2025.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.baselines.registry import register_compressor, register_selector
from score_jax.compress.compressed import Compressed
from score_jax.compress.quota import even_quotas, mask_to_indices, quota_mask, split_quotas

DOMINANT_FRAC = 54 / 64
MERGES = ("sum", "mean")  # contextual token = target + mean(members) (VisionZip's code) | mean(target, members)


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


@register_selector("visionzip_select")
def visionzip_select(visual, k: int, *, key=None, extras=None):
  del key
  frac = (extras or {}).get("dominant_frac", DOMINANT_FRAC)
  return visionzip_tokens(visual, k, frac)[0]


def frame_split(k: int, t: int, p: int, dominant_frac: float = DOMINANT_FRAC) -> tuple[np.ndarray, np.ndarray]:
  """Static per-frame (dominant [T], contextual [T]) counts: q_t = even share of k, int(q_t * frac) dominant."""
  return split_quotas("visionzip", k, t, p, dominant_frac)


def visionzip_compress_tokens(visual: jnp.ndarray, k: int, dominant_frac: float = DOMINANT_FRAC,
                              merge: str = "sum") -> Compressed:
  """[B, T, P, d] -> Compressed with k tokens: per frame dominant tokens and merged contextual tokens."""
  if merge not in MERGES:
    raise ValueError(f"visionzip merge={merge!r}; expected one of {MERGES}.")
  b, t, p, d = visual.shape
  n = t * p
  dom_q, ctx_q = frame_split(k, t, p, dominant_frac)
  dom = quota_mask(attention_received(visual), jnp.broadcast_to(jnp.asarray(dom_q), (b, t)))  # [B, T, P]
  rank = jnp.cumsum(~dom, axis=-1) - 1  # order among the frame's non-dominant tokens
  step = jnp.asarray(np.maximum((p - dom_q) // np.maximum(ctx_q, 1), 1))[None, :, None]
  target = ~dom & (rank % step == 0) & (rank // step < jnp.asarray(ctx_q)[None, :, None])
  members = ~dom & ~target
  x = visual.astype(jnp.float32)
  unit = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
  sim = jnp.einsum("btid,btjd->btij", unit, unit)
  sim = jnp.where(target[:, :, None, :], sim, -jnp.inf)
  has_target = jnp.any(target, axis=-1)[:, :, None]
  assign = jax.nn.one_hot(jnp.argmax(sim, axis=-1), p, dtype=jnp.float32) * (members & has_target)[..., None]
  total = jnp.einsum("btij,btid->btjd", assign, x)
  count = jnp.sum(assign, axis=2)[..., None]  # [B, T, P, 1] members of each target
  if merge == "sum":
    merged = x + total / jnp.maximum(count, 1.0)
  else:
    merged = (x + total) / (count + 1.0)
  feats = jnp.where(target[..., None], merged, x).astype(visual.dtype).reshape(b, n, d)
  idx = mask_to_indices((dom | target).reshape(b, n), k)
  return Compressed(jnp.take_along_axis(feats, idx[..., None], axis=1), idx, jnp.ones((b, k), bool), n)


@register_compressor("visionzip")
def visionzip_compress(visual, k: int, *, key=None, extras=None) -> Compressed:
  del key
  extras = extras or {}
  return visionzip_compress_tokens(visual, k, extras.get("dominant_frac", DOMINANT_FRAC),
                                   extras.get("visionzip_merge", "sum"))
