"""CaCoVID rollouts: Online Combinatorial Space Sampling (token mode), frame mode and content mode.

Token mode (OCSS), independently in every frame, k tokens per frame:
  1. p = softmax(keep logits over the frame's P tokens); sort descending (ties: lower index first);
  2. cut the sorted list into l = max(int(1 / (r * lam)), 1) contiguous sub-spaces (sizes as
     `np.array_split`: the first P % l get one more token);
  3. sub-space probability = its mass, capped at max(min(max_group_prob / l, 0.9), 0.1) (1 if l == 1) by
     cap-and-renormalise (`cap_probabilities`, CaCoVID's `clip_max_probability`: floor 1/l^2, then the
     exact water-filling fixed point, reached in l static iterations);
  4. draw one sub-space, then k tokens without replacement inside it with probabilities
     proportional to w_i = clip(p_i / mass, 1/(2s), 2/s) (s = P // l; the within-group clamp of the
     authors' code, `within_clip=None` turns it off) via Gumbel-top-k on log w.
  The first mask of a group is the deterministic per-frame top-k.
Log-probabilities: `ocss_logprob` gives the exact log-probability of the draw (sum over frames of
log P(sub-space) + Plackett-Luce log P(order | sub-space)), re-evaluated under any logits (the sub-space
partition is recomputed from them; a draw that is no longer inside one sub-space gets -inf). The CaCoVID
loss does NOT use it: its per-token PPO treats each token as a keep/drop action with probability
sigmoid(logit) (`sampling.per_token_keep_logprob`, see `rl/ppo.py`); `ocss_logprob` is for analysis,
tests and sequence-level surrogates.

Frame mode: frame probabilities softmax(frame logits) capped at 3/t (same cap-and-renormalise), n_f frames
drawn without replacement (Gumbel-top-k; the first mask takes the top frames), then the whole budget
(k per frame * t) is picked inside the chosen frames by density peaks over their union.
Content mode: per frame, the k density-peak tokens (deterministic).
All shapes are static: k, l, n_f and the group sizes are Python ints.
Reference: CaCoVID (arXiv 2602.01649) and its public training code.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.baselines.density_peak import density_peak_scores
from score_jax.compress.selection import indices_to_mask
from score_jax.rl.sampling import MaskSample, plackett_luce_logprob

NEG = -1e30  # finite "minus infinity" for masked logits (no NaN gradients)


def num_subspaces(ratio: float, lam: float = 2.0) -> int:
  """l = max(int(1 / (ratio * lam)), 1) (CaCoVID: num_group, lam = group_size = 2)."""
  if not 0.0 < ratio <= 1.0 or lam <= 0.0:
    raise ValueError(f"num_subspaces needs ratio in (0, 1] and lam > 0; got {ratio}, {lam}.")
  return max(int(1.0 / (ratio * lam)), 1)


def subspace_cap(l: int, max_group_prob: float = 2.0) -> float:
  """Largest sub-space probability: max(min(max_group_prob / l, 0.9), 0.1), or 1 when l == 1."""
  return max(min(max_group_prob / l, 0.9), 0.1) if l > 1 else 1.0


def subspace_of_rank(p: int, l: int) -> np.ndarray:
  """Static int32 [P]: sub-space of each sorted rank (`np.array_split` sizes)."""
  if not 1 <= l <= p:
    raise ValueError(f"{l} sub-spaces need 1 <= l <= P={p}.")
  sizes = [p // l + (i < p % l) for i in range(l)]
  return np.repeat(np.arange(l, dtype=np.int32), sizes)


def tokens_per_frame(ratio: float, p: int) -> int:
  """k = round(ratio * P), at least 1 (Python rounding, as the authors' code)."""
  return max(int(round(ratio * p)), 1)


def cap_probabilities(p: jnp.ndarray, cap: float) -> jnp.ndarray:
  """Cap-and-renormalise over the last axis: every entry <= cap, sum 1, uncapped ones keep their ratios.

  As CaCoVID's `clip_max_probability`: p is floored at 1/n^2 and normalised first, and cap is at most
  0.999. The water-filling fixed point is computed exactly: the capped set only grows, so n static
  iterations suffice.
  """
  n = p.shape[-1]
  if n == 1:
    return jnp.ones_like(p, jnp.float32)
  cap = min(cap, 0.999)
  if cap * n < 1.0:
    raise ValueError(f"cap={cap} is infeasible for {n} entries (needs cap * n >= 1).")
  p = jnp.maximum(p.astype(jnp.float32), 1.0 / n ** 2)
  p = p / jnp.sum(p, axis=-1, keepdims=True)

  def body(_, capped):
    free = jnp.where(capped, 0.0, p)
    mass = 1.0 - cap * jnp.sum(capped, axis=-1, keepdims=True)
    scaled = free * mass / jnp.maximum(jnp.sum(free, axis=-1, keepdims=True), 1e-30)
    return capped | (scaled > cap)

  capped = jax.lax.fori_loop(0, n, body, jnp.zeros(p.shape, bool))
  free = jnp.where(capped, 0.0, p)
  mass = 1.0 - cap * jnp.sum(capped, axis=-1, keepdims=True)
  scaled = free * mass / jnp.maximum(jnp.sum(free, axis=-1, keepdims=True), 1e-30)
  return jnp.where(capped, cap, scaled)


def _subspace_setup(logits: jnp.ndarray, l: int, max_group_prob: float, within_clip: float | None):
  """Per frame: (token sub-space ids [..., P], capped sub-space probs [..., l], within-group log-weights fn)."""
  p = logits.shape[-1]
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  order = jnp.argsort(-logits, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1)
  gid = jnp.asarray(subspace_of_rank(p, l))[rank]  # [..., P]
  onehot = jax.nn.one_hot(gid, l, dtype=jnp.float32)  # [..., P, l]
  mass = jnp.einsum("...p,...pl->...l", probs, onehot)
  gp = cap_probabilities(mass, subspace_cap(l, max_group_prob))
  s = p // l

  def log_weights(g):
    inside = gid == g[..., None]
    m = jnp.take_along_axis(mass, g[..., None], axis=-1)
    w = probs / jnp.maximum(m, 1e-30)
    if within_clip is not None:
      w = jnp.clip(w, 1.0 / (within_clip * s), within_clip / s)
    return jnp.where(inside, jnp.log(jnp.maximum(w, 1e-30)), NEG)

  return gid, gp, log_weights


def _ocss_from_noise(logits: jnp.ndarray, gumbel: jnp.ndarray, k: int, l: int, max_group_prob: float,
                     within_clip: float | None) -> jnp.ndarray:
  """OCSS draw given standard Gumbel noise [..., l + P] (l for the sub-space, P for the tokens)."""
  p = logits.shape[-1]
  if not 1 <= k <= p // l:
    raise ValueError(f"k={k} tokens must fit in the smallest of {l} sub-spaces of {p} tokens ({p // l}).")
  gid, gp, log_weights = _subspace_setup(logits, l, max_group_prob, within_clip)
  g = jnp.argmax(jnp.log(gp) + gumbel[..., :l], axis=-1)  # Gumbel-max: g ~ Categorical(gp)
  _, order = jax.lax.top_k(log_weights(g) + gumbel[..., l:], k)  # Gumbel-top-k inside sub-space g
  return order.astype(jnp.int32)


def ocss_frame_sample(key: jax.Array, logits: jnp.ndarray, k: int, l: int, max_group_prob: float = 2.0,
                      within_clip: float | None = 2.0) -> jnp.ndarray:
  """One OCSS draw per frame: logits [..., P] -> selection order [..., k] (local token indices)."""
  gumbel = jax.random.gumbel(key, logits.shape[:-1] + (l + logits.shape[-1],), jnp.float32)
  return _ocss_from_noise(logits, gumbel, k, l, max_group_prob, within_clip)


def ocss_frame_logprob(logits: jnp.ndarray, order: jnp.ndarray, l: int, max_group_prob: float = 2.0,
                       within_clip: float | None = 2.0) -> jnp.ndarray:
  """Exact log P(order) of one frame's OCSS draw under `logits` [..., P]; order [..., k] -> [...]."""
  gid, gp, log_weights = _subspace_setup(logits, l, max_group_prob, within_clip)
  chosen = jnp.take_along_axis(gid, order, axis=-1)
  g = chosen[..., 0]
  same = jnp.all(chosen == g[..., None], axis=-1)
  lp = jnp.log(jnp.take_along_axis(gp, g[..., None], axis=-1)[..., 0])
  lp = lp + plackett_luce_logprob(log_weights(g), order)
  return jnp.where(same, lp, -jnp.inf)


def _frames_to_sample(local_order: jnp.ndarray, p: int, n: int) -> MaskSample:
  """Per-frame local orders [..., T, k] -> MaskSample with flat indices (t * P + local) over N = T * P."""
  t, k = local_order.shape[-2:]
  flat_order = local_order + (jnp.arange(t, dtype=jnp.int32) * p)[:, None]
  indices = jnp.sort(flat_order, axis=-1).reshape(local_order.shape[:-2] + (t * k,))
  flat_order = flat_order.reshape(indices.shape)
  return MaskSample(indices, flat_order, indices_to_mask(indices, n), jnp.ones(indices.shape, bool))


def ocss_group_sample(key: jax.Array, logits: jnp.ndarray, k: int, group_size: int, l: int,
                      max_group_prob: float = 2.0, within_clip: float | None = 2.0,
                      first_topk: bool = True) -> MaskSample:
  """G OCSS masks per sample: token logits [B, T, P] -> MaskSample leaves [B, G, ...] with T * k tokens.

  `order` is flat and frame-major (each frame's tokens in their draw order), as `ocss_logprob` expects.
  """
  b, t, p = logits.shape
  gumbel = jax.random.gumbel(key, (b, group_size, t, l + p), jnp.float32)  # one draw for all: one RNG kernel
  grouped = jnp.broadcast_to(logits[:, None], (b, group_size, t, p))
  orders = _ocss_from_noise(grouped, gumbel, k, l, max_group_prob, within_clip)  # [B, G, T, k]
  if first_topk:
    top = jax.lax.top_k(logits, k)[1].astype(jnp.int32)  # [B, T, k]
    orders = orders.at[:, 0].set(top)
  return _frames_to_sample(orders, p, t * p)


def ocss_logprob(logits: jnp.ndarray, sample: MaskSample, l: int, max_group_prob: float = 2.0,
                 within_clip: float | None = 2.0) -> jnp.ndarray:
  """Sum over frames of `ocss_frame_logprob`: logits [B, T, P], sample leaves [B, G, T*k] -> [B, G]."""
  b, t, p = logits.shape
  g = sample.order.shape[1]
  local = (sample.order.reshape(b, g, t, -1) - (jnp.arange(t) * p)[:, None]).astype(jnp.int32)
  lp = ocss_frame_logprob(jnp.broadcast_to(logits[:, None], (b, g, t, p)), local, l, max_group_prob, within_clip)
  return jnp.sum(lp, axis=-1)


def content_sample(visual: jnp.ndarray, k: int, knn: int = 4) -> MaskSample:
  """Content rollout: per frame the k density-peak tokens. [B, T, P, d] -> leaves [B, 1, T * k]."""
  b, t, p, _ = visual.shape
  scores = density_peak_scores(visual, min(knn, p))
  order = jax.lax.top_k(scores, k)[1].astype(jnp.int32)[:, None]  # [B, 1, T, k]
  return _frames_to_sample(order, p, t * p)


def frames_per_rollout(t: int, frame_ratio: float = 0.125) -> int:
  """n_f = max(ceil(t * frame_ratio), 1) frames kept by a frame-mode rollout."""
  return max(math.ceil(t * frame_ratio), 1)


def frame_mode_sample(key: jax.Array, frame_logits: jnp.ndarray, visual: jnp.ndarray, k_total: int,
                      n_frames: int, group_size: int, max_frame_prob: float | None = None, knn: int = 4,
                      first_top: bool = True) -> tuple[MaskSample, jnp.ndarray]:
  """Frame-mode rollouts: (token MaskSample leaves [B, G, k_total], frame keep mask bool [B, G, T]).

  Frames: Gumbel-top-n_f on log cap_probabilities(softmax(frame_logits), 3 / t) (Plackett-Luce, i.e.
  sequential draws without replacement); the first rollout takes the n_f most probable frames. Tokens: the
  k_total highest density-peak scores over the union of the chosen frames' tokens.
  """
  b, t, p, d = visual.shape
  if not 1 <= n_frames <= t:
    raise ValueError(f"n_frames={n_frames} must be in [1, {t}].")
  if not 1 <= k_total <= n_frames * p:
    raise ValueError(f"k_total={k_total} must fit in {n_frames} frames of {p} tokens.")
  cap = 3.0 / t if max_frame_prob is None else max_frame_prob
  logp = jnp.log(cap_probabilities(jax.nn.softmax(frame_logits.astype(jnp.float32), axis=-1), cap))
  race = logp[:, None] + jax.random.gumbel(key, (b, group_size, t), jnp.float32)
  if first_top:  # the top frames by the raw frame logits
    race = race.at[:, 0].set(frame_logits.astype(jnp.float32))
  frames = jax.lax.top_k(race, n_frames)[1].astype(jnp.int32)  # [B, G, n_f]
  frame_mask = indices_to_mask(frames, t)
  tokens = jnp.take_along_axis(visual[:, None], frames[..., None, None], axis=2)  # [B, G, n_f, P, d]
  scores = density_peak_scores(tokens.reshape(b, group_size, n_frames * p, d), min(knn, n_frames * p))
  local = jax.lax.top_k(scores, k_total)[1]  # [B, G, k_total] into the union
  flat = jnp.take_along_axis(frames, local // p, axis=-1) * p + local % p
  indices = jnp.sort(flat, axis=-1).astype(jnp.int32)
  sample = MaskSample(indices, flat.astype(jnp.int32), indices_to_mask(indices, t * p),
                      jnp.ones(indices.shape, bool))
  return sample, frame_mask
