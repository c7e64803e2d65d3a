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
  `draw` (ours, `cacovid.subspace_draw`; the authors': "frame"): "video" does step 3 once per video, from
  the capped mean over frames of the sub-space masses, and every frame draws its k tokens inside the
  same-ranked sub-space g (its own tokens of that rank block); steps 1, 2 and 4 stay per frame. In a
  static video the T per-frame draws then no longer cover a frame's top l * k ranks together, and a
  rollout's reward says whether the question's object lies in rank block g. "mixed": the first half of a
  group's rollouts per frame, the second half per video; its probability is the even mixture of the two.
Log-probabilities, re-evaluated under any logits (the sub-space partition is recomputed from them; a draw
that is no longer inside one sub-space gets -inf, per video: inside one rank block in every frame):
  `ocss_logprob`: the ordered draw, sum over frames of log P(sub-space) + Plackett-Luce log P(order | sub-space);
  `ocss_set_logprob`: the combination (the keep mask the LLM saw), sum over frames of
      log P(g) + log P(S | g) (per video: log P(g) once, `ocss_video_set_logprob`), where S (|S| = k)
      lies in sub-space g and P(S | g) sums the k! orders:
      with w the within-group weights, W their total over g, and f(A) the probability that the first |A|
      draws are the set A, f({}) = 1 and f(A) = sum_{i in A} f(A - i) * w_i / (W - w(A - i)), so
      P(S | g) = f(S), computed exactly in log space over the 2^k subsets of S (`set_logprob_without_replacement`,
      static tables, k <= MAX_EXACT_K; no polynomial-time formula for it is known, so k is bounded).
  `frame_set_logprob`: the same for frame mode's n_f frames drawn from the capped frame softmax (the tokens
      inside the chosen frames are deterministic given the frames).
CaCoVID's default loss uses none of them: its per-token PPO treats each token as a keep/drop action with
probability sigmoid(logit) (`sampling.per_token_keep_logprob`, see `rl/ppo.py`); `cacovid.logprob="ocss_exact"`
uses the set log-probabilities instead (`rl/cacovid_step.py`).
Dynamic rates per sample: `rung_shapes` gives (k, l) of every ladder rate, `ocss_group_sample_by_level` draws
each row at its own rung, padded to the largest k (MaskSample validity marks the padding).

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
SUBSPACE_DRAWS = ("frame", "video", "mixed")  # where a token-mode rollout draws its sub-space (module docstring)


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


def ocss_shape(ratio: float, p: int, lam: float = 2.0) -> tuple[int, int]:
  """(k, l) of a token-mode draw at rate `ratio` over P tokens per frame: k = `tokens_per_frame`,
  l = min(`num_subspaces`, P // k). The clamp is ours: every sub-space must hold k tokens, which the
  authors' 196 tokens per frame never violate but a low rate on a small frame does (0.01 of 16 tokens)."""
  k = tokens_per_frame(ratio, p)
  return k, min(num_subspaces(ratio, lam), p // k)


def rung_shapes(ladder: tuple[float, ...], p: int, lam: float = 2.0) -> tuple[tuple[int, int], ...]:
  """`ocss_shape` of every rate of a dynamic-ratio ladder (index = rung)."""
  return tuple(ocss_shape(r, p, lam) for r in ladder)


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


def _subspace_setup(logits: jnp.ndarray, l: int, max_group_prob: float, within_clip: float | None,
                    per_video: bool = False):
  """Per frame: (token sub-space ids [..., P], capped sub-space probs [..., l], within-group log-weights fn).

  per_video: logits [..., T, P]; the sub-space probabilities are those of the video (the capped mean over its
  frames of the sub-space masses), the same in every frame."""
  p = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  probs = jnp.exp(logp)
  order = jnp.argsort(-logits, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1)
  gid = jnp.asarray(subspace_of_rank(p, l))[rank]  # [..., P]
  onehot = jax.nn.one_hot(gid, l, dtype=jnp.float32)  # [..., P, l]
  mass = jnp.einsum("...p,...pl->...l", probs, onehot)
  if per_video:
    video_mass = jnp.mean(mass, axis=-2, keepdims=True)
    gp = jnp.broadcast_to(cap_probabilities(video_mass, subspace_cap(l, max_group_prob)), mass.shape)
  else:
    gp = cap_probabilities(mass, subspace_cap(l, max_group_prob))
  s = p // l

  def log_weights(g):
    # log(p_i / mass of g), in log space: a sub-space's mass can underflow when the logits are far apart, and
    # p / mass then has an infinite derivative (NaN gradients, even where the loss does not use it)
    inside = gid == g[..., None]
    log_w = logp - jax.nn.logsumexp(jnp.where(inside, logp, NEG), axis=-1, keepdims=True)
    if within_clip is not None:
      log_w = jnp.clip(log_w, -np.log(within_clip * s), np.log(within_clip / s))
    return jnp.where(inside, log_w, NEG)

  return gid, gp, log_weights


def _ocss_from_noise(logits: jnp.ndarray, gumbel: jnp.ndarray, k: int, l: int, max_group_prob: float,
                     within_clip: float | None, per_video: bool = False) -> jnp.ndarray:
  """OCSS draw given standard Gumbel noise [..., l + P] (l for the sub-space, P for the tokens; per_video:
  logits and noise [..., T, *], the first frame's sub-space noise picks the video's rank block)."""
  p = logits.shape[-1]
  if not 1 <= k <= p // l:
    raise ValueError(f"k={k} tokens must fit in the smallest of {l} sub-spaces of {p} tokens ({p // l}).")
  gid, gp, log_weights = _subspace_setup(logits, l, max_group_prob, within_clip, per_video)
  g_noise = gumbel[..., :1, :l] if per_video else gumbel[..., :l]  # per video: one draw shared by the frames
  g = jnp.argmax(jnp.log(gp) + g_noise, axis=-1)  # Gumbel-max: g ~ Categorical(gp)
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


def _flat_to_sample(flat: jnp.ndarray, valid: jnp.ndarray, n: int) -> MaskSample:
  """Flat draw orders [..., K] with validity -> MaskSample: valid indices first, ascending; padding index 0."""
  key = jnp.where(valid, flat, n)  # padding sorts last
  indices = jnp.sort(key, axis=-1).astype(jnp.int32)
  kept = indices < n
  indices = jnp.where(kept, indices, 0)
  order = jnp.where(valid, flat, 0).astype(jnp.int32)
  return MaskSample(indices, order, indices_to_mask(indices, n, kept), kept)


def _padded_frames_to_sample(local_order: jnp.ndarray, p: int) -> MaskSample:
  """Per-frame local orders [..., T, k_max] with -1 padding -> MaskSample over N = T * P (order frame-major)."""
  t, k = local_order.shape[-2:]
  valid = local_order >= 0
  flat = local_order + (jnp.arange(t, dtype=jnp.int32) * p)[:, None]
  shape = local_order.shape[:-2] + (t * k,)
  return _flat_to_sample(flat.reshape(shape), valid.reshape(shape), t * p)


def ocss_group_sample(key: jax.Array, logits: jnp.ndarray, k: int, group_size: int, l: int,
                      max_group_prob: float = 2.0, within_clip: float | None = 2.0,
                      first_topk: bool = True, draw: str = "frame") -> MaskSample:
  """G OCSS masks per sample: token logits [B, T, P] -> MaskSample leaves [B, G, ...] with T * k tokens
  (`draw`: a sub-space per frame, one rank block per rollout, or half of each; see the module docstring).

  `order` is flat and frame-major (each frame's tokens in their draw order), as `ocss_logprob` expects.
  """
  b, t, p = logits.shape
  gumbel = jax.random.gumbel(key, (b, group_size, t, l + p), jnp.float32)  # one draw for all: one RNG kernel
  grouped = jnp.broadcast_to(logits[:, None], (b, group_size, t, p))
  if draw not in SUBSPACE_DRAWS:
    raise ValueError(f"draw={draw!r}; expected one of {SUBSPACE_DRAWS}.")
  orders = _ocss_from_noise(grouped, gumbel, k, l, max_group_prob, within_clip, draw == "video")  # [B, G, T, k]
  if draw == "mixed":  # the second half per video (the same noise: each rollout uses one of the two draws)
    video = _ocss_from_noise(grouped, gumbel, k, l, max_group_prob, within_clip, True)
    orders = jnp.where((jnp.arange(group_size) >= group_size - group_size // 2)[:, None, None], video, orders)
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


def _rows_at(levels: jnp.ndarray, shapes: tuple[tuple[int, int], ...], shape: tuple[int, int]) -> jnp.ndarray:
  """bool [...]: entries of `levels` whose rung has (k, l) == shape."""
  rungs = [j for j, s in enumerate(shapes) if s == shape]
  return jnp.isin(levels, jnp.asarray(rungs, jnp.int32))


def ocss_group_sample_by_level(key: jax.Array, logits: jnp.ndarray, levels: jnp.ndarray,
                               shapes: tuple[tuple[int, int], ...], group_size: int, max_group_prob: float = 2.0,
                               within_clip: float | None = 2.0, first_topk: bool = True,
                               draw: str = "frame") -> MaskSample:
  """G OCSS masks per sample, each sample at its own rung: logits [B, T, P], levels int [B] (index into
  `shapes`, the (k, l) of every rung) -> MaskSample leaves [B, G, T * k_max]; a row at a rung with k < k_max
  has its padding marked invalid (`valid`), so one compiled step serves every mix of rates. Every (k, l) draws
  from the same key, so rows at one rung get exactly `ocss_group_sample`'s masks."""
  b, t, p = logits.shape
  k_max = max(k for k, _ in shapes)
  orders = jnp.full((b, group_size, t, k_max), -1, jnp.int32)
  for k, l in sorted(set(shapes)):
    o = ocss_group_sample(key, logits, k, group_size, l, max_group_prob, within_clip, first_topk, draw).order
    o = jnp.pad(o.reshape(b, group_size, t, k) - (jnp.arange(t, dtype=jnp.int32) * p)[:, None],
                ((0, 0), (0, 0), (0, 0), (0, k_max - k)), constant_values=-1)
    orders = jnp.where(_rows_at(levels, shapes, (k, l))[:, None, None, None], o, orders)
  return _padded_frames_to_sample(orders, p)


MAX_EXACT_K = 10  # the exact set log-probability visits 2^k subsets


def _subset_tables(k: int) -> tuple[np.ndarray, np.ndarray]:
  """Static tables over the 2^k subsets A of k items: bit [2^k, k] (i in A), minus [2^k, k] (index of A - {i})."""
  a = np.arange(2 ** k)
  bits = (a[:, None] >> np.arange(k)) & 1
  return bits.astype(bool), (a[:, None] & ~(1 << np.arange(k))).astype(np.int32)


def set_logprob_without_replacement(log_w: jnp.ndarray, members: jnp.ndarray) -> jnp.ndarray:
  """Exact log P(the first k draws form the set `members`) for draws without replacement with
  P(i) proportional to w_i among the items left (Plackett-Luce; Gumbel-top-k on log w draws it).

  log_w [..., M] (NEG for weight 0), members [..., k] distinct -> [...]. Sums the k! orders by the
  recursion over subsets A of S: f(A) = sum_{i in A} f(A - i) w_i / R(A - i), R(B) = w(outside S) + w(S - B),
  every term positive (no cancellation), in log space; O(k 2^k) per set, k <= MAX_EXACT_K.
  """
  k, m = members.shape[-1], log_w.shape[-1]
  if not 1 <= k <= min(MAX_EXACT_K, m):
    raise ValueError(f"exact set log-probability needs 1 <= k <= {MAX_EXACT_K} (and <= {m} items); got k={k}. "
                     "Use cacovid.logprob='per_token' for larger rates.")
  bits, minus = _subset_tables(k)
  log_w = jnp.maximum(log_w.astype(jnp.float32), NEG)
  lw_s = jnp.take_along_axis(log_w, members, axis=-1)  # [..., k]
  inside = indices_to_mask(members, m)
  lw_out = jax.nn.logsumexp(jnp.where(inside, NEG, log_w), axis=-1)  # [...]
  lw_rest = jax.nn.logsumexp(jnp.where(bits, NEG, lw_s[..., None, :]), axis=-1)  # w(S - B) [..., 2^k]
  log_r = jnp.logaddexp(lw_out[..., None], lw_rest)  # R(B): weight left after drawing B
  step = lw_s[..., None, :] - log_r[..., minus]  # log(w_i / R(A - i)) [..., 2^k, k]
  empty = jnp.arange(2 ** k) == 0
  log_f = jnp.where(empty, 0.0, NEG) * jnp.ones_like(lw_rest)
  for _ in range(k):  # after j rounds every subset of size <= j is exact
    cand = jnp.where(bits, log_f[..., minus] + step, NEG)
    log_f = jnp.where(empty, 0.0, jax.nn.logsumexp(cand, axis=-1))
  return log_f[..., -1]


def ocss_frame_set_logprob(logits: jnp.ndarray, members: jnp.ndarray, l: int, max_group_prob: float = 2.0,
                           within_clip: float | None = 2.0) -> jnp.ndarray:
  """Exact log P(the frame's kept set) under OCSS: logits [..., P], members [..., k] -> [...].

  log P(g) + log P(S | g) for the sub-space g holding S; -inf when S straddles sub-spaces under `logits`.
  """
  gid, gp, log_weights = _subspace_setup(logits, l, max_group_prob, within_clip)
  chosen = jnp.take_along_axis(gid, members, axis=-1)
  g = chosen[..., 0]
  same = jnp.all(chosen == g[..., None], axis=-1)
  lp = jnp.log(jnp.take_along_axis(gp, g[..., None], axis=-1)[..., 0])
  lp = lp + set_logprob_without_replacement(log_weights(g), members)
  return jnp.where(same, lp, -jnp.inf)


def ocss_video_set_logprob(logits: jnp.ndarray, members: jnp.ndarray, l: int, max_group_prob: float = 2.0,
                           within_clip: float | None = 2.0) -> jnp.ndarray:
  """Exact log P(the kept sets of all frames) under per-video OCSS: logits [..., T, P], members [..., T, k]
  -> [...]: log P(g) once + sum over frames of log P(S_t | g); -inf unless every S_t lies in rank block g."""
  gid, gp, log_weights = _subspace_setup(logits, l, max_group_prob, within_clip, per_video=True)
  chosen = jnp.take_along_axis(gid, members, axis=-1)  # [..., T, k]
  g = chosen[..., 0, 0]
  same = jnp.all(chosen == g[..., None, None], axis=(-2, -1))
  lp = jnp.log(jnp.take_along_axis(gp[..., 0, :], g[..., None], axis=-1)[..., 0])
  g_frames = jnp.broadcast_to(g[..., None], chosen.shape[:-1])
  lp = lp + jnp.sum(set_logprob_without_replacement(log_weights(g_frames), members), axis=-1)
  return jnp.where(same, lp, -jnp.inf)


def ocss_set_logprob(logits: jnp.ndarray, masks: jnp.ndarray, k: int, l: int, max_group_prob: float = 2.0,
                     within_clip: float | None = 2.0, draw: str = "frame") -> jnp.ndarray:
  """log P(keep mask) of token-mode rollouts with k tokens per frame: logits [B, T, P], masks bool [B, C, N]
  -> [B, C]: sum over frames of `ocss_frame_set_logprob` ("frame"), `ocss_video_set_logprob` ("video"), or
  the log of their even mixture ("mixed")."""
  b, t, p = logits.shape
  c = masks.shape[1]
  members = jax.lax.top_k(masks.reshape(b, c, t, p).astype(jnp.float32), k)[1]  # the frame's kept tokens
  grouped = jnp.broadcast_to(logits[:, None], (b, c, t, p))
  if draw not in SUBSPACE_DRAWS:
    raise ValueError(f"draw={draw!r}; expected one of {SUBSPACE_DRAWS}.")
  per_video = ocss_video_set_logprob(grouped, members, l, max_group_prob, within_clip) if draw != "frame" else None
  if draw == "video":
    return per_video
  per_frame = jnp.sum(ocss_frame_set_logprob(grouped, members, l, max_group_prob, within_clip), axis=-1)
  if draw == "frame":
    return per_frame
  never = jnp.isneginf(per_frame) & jnp.isneginf(per_video)  # logaddexp(-inf, -inf) has NaN gradients
  mixed = jnp.logaddexp(jnp.where(never, 0.0, per_frame), jnp.where(never, 0.0, per_video)) - jnp.log(2.0)
  return jnp.where(never, -jnp.inf, mixed)


def ocss_set_logprob_by_level(logits: jnp.ndarray, masks: jnp.ndarray, levels: jnp.ndarray,
                              shapes: tuple[tuple[int, int], ...], max_group_prob: float = 2.0,
                              within_clip: float | None = 2.0, draw: str = "frame") -> jnp.ndarray:
  """`ocss_set_logprob` of rollouts drawn at different rungs: levels int [B, C] index `shapes` -> [B, C]."""
  out = jnp.zeros(masks.shape[:2], jnp.float32)
  for k, l in sorted(set(shapes)):
    lp = ocss_set_logprob(logits, masks, k, l, max_group_prob, within_clip, draw)
    out = jnp.where(_rows_at(levels, shapes, (k, l)), lp, out)
  return out


def frame_set_logprob(frame_logits: jnp.ndarray, frame_masks: jnp.ndarray, n_frames: int,
                      max_frame_prob: float | None = None) -> jnp.ndarray:
  """Exact log P(frame set) of frame-mode rollouts: frame_logits [B, T], frame_masks bool [B, C, T] -> [B, C]
  (n_frames drawn without replacement from cap_probabilities(softmax, 3 / T), as `frame_mode_sample`)."""
  t = frame_logits.shape[-1]
  cap = 3.0 / t if max_frame_prob is None else max_frame_prob
  logp = jnp.log(cap_probabilities(jax.nn.softmax(frame_logits.astype(jnp.float32), axis=-1), cap))
  members = jax.lax.top_k(frame_masks.astype(jnp.float32), n_frames)[1]
  return set_logprob_without_replacement(jnp.broadcast_to(logp[:, None], frame_masks.shape), members)


def content_sample(visual: jnp.ndarray, k: int, knn: int = 4, k_valid: jnp.ndarray | None = None) -> MaskSample:
  """Content rollout: per frame the k density-peak tokens. [B, T, P, d] -> leaves [B, 1, T * k].

  k_valid int [B] (optional, <= k): row b keeps only its k_valid[b] best tokens per frame (rest padding)."""
  b, t, p, _ = visual.shape
  scores = density_peak_scores(visual, min(knn, p))
  order = jax.lax.top_k(scores, k)[1].astype(jnp.int32)[:, None]  # [B, 1, T, k]
  if k_valid is None:
    return _frames_to_sample(order, p, t * p)
  return _padded_frames_to_sample(jnp.where(jnp.arange(k) < k_valid[:, None, None, None], order, -1), p)


def frames_per_rollout(t: int, frame_ratio: float = 0.125) -> int:
  """n_f = max(ceil(t * frame_ratio), 1) frames kept by a frame-mode rollout."""
  return max(math.ceil(t * frame_ratio), 1)


def frame_mode_sample(key: jax.Array, frame_logits: jnp.ndarray, visual: jnp.ndarray, k_total: int,
                      n_frames: int, group_size: int, max_frame_prob: float | None = None, knn: int = 4,
                      first_top: bool = True, k_valid: jnp.ndarray | None = None) -> tuple[MaskSample, jnp.ndarray]:
  """Frame-mode rollouts: (token MaskSample leaves [B, G, k_total], frame keep mask bool [B, G, T]).

  Frames: Gumbel-top-n_f on log cap_probabilities(softmax(frame_logits), 3 / t) (Plackett-Luce, i.e.
  sequential draws without replacement); the first rollout takes the n_f most probable frames. Tokens: the
  k_total highest density-peak scores over the union of the chosen frames' tokens (row b: only its
  k_valid[b] <= k_total highest, the rest padding, when k_valid int [B] is given).
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
  if k_valid is not None:
    return _flat_to_sample(flat, jnp.arange(k_total) < k_valid[:, None, None], t * p), frame_mask
  indices = jnp.sort(flat, axis=-1).astype(jnp.int32)
  sample = MaskSample(indices, flat.astype(jnp.int32), indices_to_mask(indices, t * p),
                      jnp.ones(indices.shape, bool))
  return sample, frame_mask
