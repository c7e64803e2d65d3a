"""FastVID: Dynamic Temporal Segmentation, then Density Spatiotemporal Pruning with merged anchor tokens.

As the authors' LLaVA-OneVision code (LunarShen/FastVID@a40a109c,
fastvid_llavaonevision/LLaVA-NeXT/llava/model/language_model/modeling_qwen2.py, "FastVID" block; defaults
from fastvid_llavaonevision/scripts/eval.sh), on visual tokens [B, T, P, d] and a static budget k:
- DySeg: cosine similarity of consecutive frames' global features; a new segment starts after each of
  the c - 1 least similar transitions (c = 8) and after every transition below tau = 0.9.
- Budget: frame t's share q_t of k (`even_quotas`) splits into int(q_t * d) context tokens (d = 0.4) and
  q_t - int(q_t * d) salient ones.
- ATS: in every frame, the salient tokens are the most attended by the frame's global query.
- DTM: in each segment, every p-th frame counted back from its last frame (p = 4) is an anchor frame; the
  segment's context budget (sum of its frames') is split over its anchor frames; each anchor frame's anchor
  tokens are the density peaks (DPC-kNN, knn 4, rho * delta as `density_peak.py`) among its non-salient
  tokens. Every non-salient token of the segment (anchors included) joins, in each anchor frame of its
  segment, the most cosine-similar anchor; an anchor with n members becomes w * anchor + (1 - w) *
  mean(members), w = max(1 / (n + 1), beta), beta = 0.6.
- Salient and anchor tokens keep their original positions (the code's `keep_indexs`), in temporal order.
Adaptations: SigLIP's attention-pooling head, which gives FastVID the frame features (its pooled output) and
the ATS scores (its probe's attention), is not part of LLaVA-OneVision's LLM-space tokens that compressors
see: the frame feature is the mean of the frame's tokens and the ATS score the attention softmax(<mean,
x_i> / sqrt(d)) of that mean as the probe. The code floors each anchor frame's share of the segment budget
and drops the remainder; here the remainder goes to the segment's earliest anchor frames, so exactly k
tokens are kept (fewer, padded with invalid slots, only if an anchor frame has fewer non-salient tokens
than its share). With the default c = 8, a video of at most 8 frames is cut at every transition (every
frame its own segment); pass extras["fastvid_c"] to change it.
Reference: Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large Language Models", NeurIPS 2025.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.baselines.density_peak import pairwise_distance
from score_jax.compress.baselines.registry import register_compressor
from score_jax.compress.compressed import Compressed, indices_valid
from score_jax.compress.quota import mask_to_indices, quota_mask, rank_within, split_quotas

DEFAULTS = dict(c=8, tau=0.9, d=0.4, p=4, beta=0.6, knn=4)  # FastVID's eval.sh / lmms-eval model args


def _unit(x: jnp.ndarray) -> jnp.ndarray:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def frame_similarity(visual: jnp.ndarray) -> jnp.ndarray:
  """Cosine similarity of consecutive frames' mean tokens: [B, T, P, d] -> [B, T - 1]."""
  g = _unit(jnp.mean(visual.astype(jnp.float32), axis=2))
  return jnp.sum(g[:, :-1] * g[:, 1:], axis=-1)


def segment_starts(similarity: jnp.ndarray, c: int, tau: float) -> jnp.ndarray:
  """bool [B, T]: frame t starts a segment (frame 0 always; frame t + 1 after a cut transition t)."""
  b, m = similarity.shape
  if c < 1:
    raise ValueError(f"fastvid: c={c} segments must be >= 1.")
  cuts = similarity < tau
  n_low = min(c - 1, m)
  if n_low:
    cuts = cuts | (rank_within(-similarity) < n_low)  # the n_low least similar transitions
  return jnp.concatenate([jnp.ones((b, 1), bool), cuts], axis=1)


def anchor_frames(starts: jnp.ndarray, p: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(segment id [B, T], anchor frame [B, T]): every p-th frame counted back from its segment's last frame."""
  if p < 1:
    raise ValueError(f"fastvid: p={p} must be >= 1.")
  t = starts.shape[1]
  seg = jnp.cumsum(starts, axis=1) - 1
  same = seg[:, :, None] == seg[:, None, :]
  last = jnp.max(jnp.where(same, jnp.arange(t), -1), axis=-1)
  return seg, (last - jnp.arange(t)) % p == 0


def anchor_quotas(seg: jnp.ndarray, anchor: jnp.ndarray, context: np.ndarray, cap: np.ndarray) -> jnp.ndarray:
  """Anchor tokens per frame [B, T]: each segment's context budget (sum of `context` [T] over its frames)
  split evenly over its anchor frames, the remainder one by one to the earliest; at most `cap` [T]."""
  t = seg.shape[1]
  same = seg[:, :, None] == seg[:, None, :]  # [B, t, t']
  budget = jnp.sum(jnp.where(same, jnp.asarray(context)[None, None, :], 0), axis=-1)
  count = jnp.sum(same & anchor[:, None, :], axis=-1)
  before = jnp.sum(same & anchor[:, None, :] & (jnp.arange(t)[None, None, :] < jnp.arange(t)[None, :, None]), -1)
  share = budget // jnp.maximum(count, 1) + (before < budget % jnp.maximum(count, 1))
  return jnp.minimum(jnp.where(anchor, share, 0), jnp.asarray(cap)[None, :]).astype(jnp.int32)


def probe_attention(visual: jnp.ndarray) -> jnp.ndarray:
  """ATS scores [B, T, P]: attention of each frame's mean token (the probe) over the frame's tokens."""
  x = visual.astype(jnp.float32)
  logits = jnp.einsum("btd,btpd->btp", jnp.mean(x, axis=2), x) / np.sqrt(x.shape[-1])
  return jax.nn.softmax(logits, axis=-1)


def masked_density_scores(visual: jnp.ndarray, mask: jnp.ndarray, knn: int) -> jnp.ndarray:
  """DPC-kNN scores rho * delta [B, T, P] among each frame's tokens where `mask`; -inf elsewhere."""
  dist = pairwise_distance(visual)  # [B, T, P, P]
  pair = mask[..., :, None] & mask[..., None, :]
  big = jnp.max(jnp.where(pair, dist, 0.0), axis=(-2, -1), keepdims=True)  # the frame's largest distance
  nearest = -jax.lax.top_k(-jnp.where(mask[..., None, :], dist, jnp.inf), knn)[0]
  density = jnp.exp(-jnp.mean(nearest ** 2, axis=-1))
  p = visual.shape[2]
  density = density * (1.0 - 1e-6 * jnp.arange(p) / p)  # ties: the lower index is denser
  denser = (density[..., None, :] > density[..., :, None]) & mask[..., None, :]
  delta = jnp.min(jnp.where(denser, dist, big), axis=-1)
  return jnp.where(mask, delta * density, -jnp.inf)


def budget_split(k: int, t: int, p: int, d: float) -> tuple[np.ndarray, np.ndarray]:
  """Static per-frame (salient [T], context [T]) counts: q_t = even share of k, int(q_t * d) context."""
  ctx, salient = split_quotas("fastvid", k, t, p, d)
  return salient, ctx


def _merge_anchors(x, nonsalient, anchor_idx, seg, per_frame: int, beta: float):
  """One video: x [N, d], nonsalient [N], anchor_idx [K] (padded with N), seg [T] -> merged anchors [K, d]."""
  n = x.shape[0]
  t = seg.shape[0]
  idx, valid = indices_valid(anchor_idx, n)
  frame = idx // per_frame
  sim = _unit(x) @ _unit(x[idx]).T  # [N, K]
  allowed = nonsalient[:, None] & valid[None, :] & (seg[jnp.arange(n) // per_frame][:, None] == seg[frame][None, :])
  sim = jnp.where(allowed, sim, -jnp.inf)
  best = jax.ops.segment_max(sim.T, frame, num_segments=t)  # [T, N]: best anchor of each anchor frame
  hit = allowed & (sim >= best[frame].T)
  cand = jnp.where(hit, jnp.arange(idx.shape[0])[None, :], idx.shape[0])
  first = jax.ops.segment_min(cand.T, frame, num_segments=t)  # ties: the first anchor
  assign = (hit & (jnp.arange(idx.shape[0])[None, :] == first[frame].T)).astype(jnp.float32)  # [N, K]
  count = jnp.sum(assign, axis=0)[:, None]
  mean = (assign.T @ x) / jnp.maximum(count, 1.0)
  w = jnp.maximum(1.0 / (count + 1.0), beta)
  return w * x[idx] + (1.0 - w) * mean


def fastvid_compress_tokens(visual: jnp.ndarray, k: int, c: int = DEFAULTS["c"], tau: float = DEFAULTS["tau"],
                            d: float = DEFAULTS["d"], p: int = DEFAULTS["p"], beta: float = DEFAULTS["beta"],
                            knn: int = DEFAULTS["knn"]) -> Compressed:
  """[B, T, P, dim] -> Compressed with k slots: salient tokens and merged anchors at their own positions."""
  b, t, pp, dim = visual.shape
  n = t * pp
  sal_q, ctx_q = budget_split(k, t, pp, d)
  k_ctx = int(ctx_q.sum())
  x = visual.astype(jnp.float32)
  salient = quota_mask(probe_attention(visual), jnp.broadcast_to(jnp.asarray(sal_q), (b, t)))
  seg, anchor = anchor_frames(segment_starts(frame_similarity(visual), c, tau), p)
  kept = salient
  feats = x.reshape(b, n, dim)
  if k_ctx:
    free = pp - sal_q  # non-salient tokens per frame
    knn = max(1, min(knn, int(free.min())))
    scores = masked_density_scores(x, ~salient, knn)
    anchors = quota_mask(scores, anchor_quotas(seg, anchor, ctx_q, free)) & ~salient
    anchor_idx = mask_to_indices(anchors.reshape(b, n), k_ctx)
    merged = jax.vmap(_merge_anchors, in_axes=(0, 0, 0, 0, None, None))(
        feats, ~salient.reshape(b, n), anchor_idx, seg, pp, beta)
    rows = jnp.arange(b)[:, None]
    feats = feats.at[rows, anchor_idx].set(merged, mode="drop")  # padded slots (index N) are dropped
    kept = kept | anchors
  idx, valid = indices_valid(mask_to_indices(kept.reshape(b, n), k), n)
  tokens = jnp.take_along_axis(feats, idx[..., None], axis=1).astype(visual.dtype)
  return Compressed(tokens, idx, valid, n)


@register_compressor("fastvid")
def fastvid_compress(visual, k: int, *, key=None, extras=None) -> Compressed:
  del key
  extras = extras or {}
  kw = {name: extras[f"fastvid_{name}"] for name in DEFAULTS if f"fastvid_{name}" in extras}
  return fastvid_compress_tokens(visual, k, **kw)
