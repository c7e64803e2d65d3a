"""CaCoVID inference: per-frame budgets from frame logits, top tokens per frame, uniform fill for the rest.

At retention rho with N = T * P tokens, k = budget(N, rho) tokens are kept (static):
  1. frame logits scaled so that max |logit| = 3, softmax, clipped to [1 / (2T), share / (T * rho)], renormalised
     (share = `max_frame_share`; the authors' evaluation script uses 1.5 * rho, the class default is 0.5);
  2. tokens per frame q_t = round(p_t * round(imp * rho * N)) clipped to [1, int(imp * P * share)], then one-token
     corrections (take from the largest frame / give to the smallest) until sum q = k_imp = floor(imp * rho * N)
     (`quota.round_quotas`; bounds are widened only if the target is otherwise unreachable);
  3. in every frame keep its q_t highest-scoring tokens;
  4. the rest of the budget, k - k_imp (share 1 - imp), goes to tokens spread uniformly over the remaining
     positions in temporal (frame-major, raster) order: positions round(linspace(0, R - 1, k - k_imp)) of the R
     unselected tokens, as the authors' `div_sample_eval`.
Jittable: everything is static except the correction loop, a `lax.while_loop`.
`dedup` > 0 (ours, `cacovid_eval.dedup`; not the authors'): after frame 0, a token at a place that has
not changed since (cosine similarity >= dedup with the place in the previous frame, every frame so far:
`surprise.still_places`) is a repeat; steps 1-3 are then replaced by one ranking over the video,
log P(frame) + log P(token | frame) under the policy (frame logits scaled as in step 1), repeats last
(earliest frame first), so that a still scene spends its budget on distinct tokens rather than on the same
top places of every frame, and a place that changed stays in the running in every later frame.
Reference: CaCoVID (arXiv 2602.01649) evaluation code (`sample_token_eval`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.quota import mask_to_indices, quota_mask, round_quotas
from score_jax.compress.selection import budget, indices_to_mask
from score_jax.compress.surprise import repeats_last, still_places


def _floor(x: float) -> int:
  return int(math.floor(round(x, 9)))


def importance_budget(n: int, ratio: float, imp: float) -> int:
  """k_imp = floor(imp * ratio * N), at most budget(N, ratio)."""
  return min(_floor(imp * ratio * n), budget(n, ratio))


def scaled_frame_logits(frame_logits: jnp.ndarray) -> jnp.ndarray:
  """Frame logits [..., T] in float32, scaled so that max |logit| = 3 (step 1)."""
  fl = frame_logits.astype(jnp.float32)
  return fl / jnp.maximum(jnp.max(jnp.abs(fl), axis=-1, keepdims=True), 1e-12) * 3.0


def frame_budgets(frame_logits: jnp.ndarray, ratio: float, p: int, imp: float = 0.5,
                  max_frame_share: float | None = None) -> jnp.ndarray:
  """Integer tokens per frame [B, T] for the importance share; they sum to `importance_budget`."""
  if not 0.0 < ratio <= 1.0 or not 0.0 <= imp <= 1.0:
    raise ValueError(f"need ratio in (0, 1] and imp in [0, 1]; got {ratio}, {imp}.")
  t = frame_logits.shape[-1]
  n = t * p
  share = 1.5 * ratio if max_frame_share is None else max_frame_share
  if share / ratio < 0.5:
    raise ValueError(f"max_frame_share={share} gives a frame cap below the 1/(2T) floor (needs share >= ratio / 2).")
  k_imp = importance_budget(n, ratio, imp)
  prob = jnp.clip(jax.nn.softmax(scaled_frame_logits(frame_logits), axis=-1), 1.0 / (2 * t), share / (t * ratio))
  prob = prob / jnp.sum(prob, axis=-1, keepdims=True)
  lo = 1 if k_imp >= t else 0
  hi = min(max(int(imp * p * share), 1, math.ceil(k_imp / t)), p)
  return round_quotas(prob, k_imp, lo, hi, scale=int(round(imp * ratio * n)))


def uniform_positions(r: int, m: int) -> np.ndarray:
  """Static round(linspace(0, r - 1, m)) (half to even, as torch)."""
  return np.round(np.linspace(0, r - 1, m)).astype(np.int32) if m else np.zeros((0,), np.int32)


def video_ranked_mask(token_logits: jnp.ndarray, frame_logits: jnp.ndarray, repeated: jnp.ndarray,
                      k: int) -> jnp.ndarray:
  """bool [B, T * P]: the k tokens of highest log P(frame) + log P(token | frame); repeats (bool [B, T, P]) only
  after them, earliest frame first."""
  b, t, p = token_logits.shape
  if k == 0:  # imp = 0: the whole budget is the uniform fill
    return jnp.zeros((b, t * p), bool)
  log_frame = jax.nn.log_softmax(scaled_frame_logits(frame_logits), axis=-1)
  score = repeats_last(log_frame[..., None] + jax.nn.log_softmax(token_logits.astype(jnp.float32), -1), repeated)
  return indices_to_mask(jax.lax.top_k(score.reshape(b, t * p), k)[1], t * p)


def cacovid_keep_indices(token_logits: jnp.ndarray, frame_logits: jnp.ndarray, ratio: float, imp: float = 0.5,
                         max_frame_share: float | None = None, repeated: jnp.ndarray | None = None) -> jnp.ndarray:
  """Kept token indices [B, k] ascending, k = budget(T * P, ratio), from token [B, T, P] and frame [B, T] logits
  (`repeated` bool [B, T, P]: rank over the video with repeats last instead of per-frame quotas)."""
  b, t, p = token_logits.shape
  n = t * p
  k = budget(n, ratio)
  k_imp = importance_budget(n, ratio, imp)
  if repeated is None:
    quotas = frame_budgets(frame_logits, ratio, p, imp, max_frame_share)
    chosen = quota_mask(token_logits, quotas).reshape(b, n)
  else:
    chosen = video_ranked_mask(token_logits, frame_logits, repeated, k_imp)
  k_uni = k - k_imp
  if k_uni:
    rest = mask_to_indices(~chosen, n - k_imp)
    fill = rest[:, uniform_positions(n - k_imp, k_uni)]
    chosen = chosen | indices_to_mask(fill, n)
  return mask_to_indices(chosen, k)


def policy_keep_indices(policy, params, visual: jnp.ndarray, question: jnp.ndarray,
                        question_mask: jnp.ndarray | None, ratio: float, imp: float = 0.5,
                        max_frame_share: float | None = None, dedup: float = 0.0) -> jnp.ndarray:
  """A trained `CaCoVIDPolicy` end to end: visual [B, T, P, d] + question embeddings -> kept indices [B, k].

  Jit with `static_argnums=(0, 5, 6, 7, 8)` (policy, ratio, imp, max_frame_share, dedup).
  """
  out = policy.apply({"params": params}, visual, question, question_mask)
  repeated = still_places(visual, dedup) if dedup else None
  return cacovid_keep_indices(out.token, out.frame, ratio, imp, max_frame_share, repeated)
