"""Keep-mask samplers and log-probabilities that can be re-evaluated under new logits.

Samplers (registry `SAMPLERS`, selected by name):
  "gumbel_topk": exactly k tokens; Gumbel-top-k draws an ordered k-subset from the
      Plackett-Luce (sequential softmax without replacement) distribution.
  "bernoulli": m_i ~ Bernoulli(sigmoid(l_i)), truncated to at most k_max tokens.
  "sized_topk": a count c ~ Categorical(count logits) over a few static levels, then the first c of a
      Gumbel-top-k_max order: a Plackett-Luce subset of size c (`sized_group_sample`; adaptive SCORE).

Log-probabilities (registry `LOGPROBS`, used by `mask_logprob`):
  "plackett_luce": exact log P(order) of the sampled selection order (gumbel_topk only).
  "cheap_set": sum over kept tokens of log_softmax(logits) (a cheap set surrogate).
  "bernoulli": sum over all N tokens of the per-token keep/drop log-probability.
  "per_token": per-token keep/drop log-probability [..., N] (for per-token PPO ratios).
  "sized_plackett_luce": log P(level) + log P(first c of the order) (sized_topk only).

All functions act on the last axis and accept any leading batch shape.
"""
from __future__ import annotations

from typing import Callable

import flax
import jax
import jax.numpy as jnp

from score_jax.compress.selection import indices_to_mask, variable_topk


@flax.struct.dataclass
class MaskSample:
  indices: jnp.ndarray  # int32 [..., k]: kept indices, valid ones first in ascending order
  order: jnp.ndarray  # int32 [..., k]: selection order (Gumbel argsort); == indices for bernoulli
  mask: jnp.ndarray  # bool [..., N]
  valid: jnp.ndarray  # bool [..., k]: which entries of `indices` are real (all True for top-k)
  level: jnp.ndarray | None = None  # int32 [...]: sized_topk's sampled count level
  count: jnp.ndarray | None = None  # int32 [...]: sized_topk's kept count (the valid prefix of `order`)


def gumbel_topk_sample(key: jax.Array, logits: jnp.ndarray, k: int) -> MaskSample:
  """Sample k tokens without replacement, P(order) = Plackett-Luce(softmax(logits))."""
  logits = logits.astype(jnp.float32)
  g = jax.random.gumbel(key, logits.shape, jnp.float32)
  _, order = jax.lax.top_k(logits + g, k)
  order = order.astype(jnp.int32)
  indices = jnp.sort(order, axis=-1)
  mask = indices_to_mask(indices, logits.shape[-1])
  return MaskSample(indices, order, mask, jnp.ones(indices.shape, bool))


def bernoulli_sample(key: jax.Array, logits: jnp.ndarray, k_max: int) -> MaskSample:
  """m_i ~ Bernoulli(sigmoid(l_i)) via z_i = l_i + Logistic noise > 0; at most k_max kept.

  If more than k_max tokens are drawn, the k_max with the largest z (logit + noise) are kept.
  `indices` holds the kept tokens in ascending order, then padding with index 0 (valid=False).
  """
  logits = logits.astype(jnp.float32)
  z = logits + jax.random.logistic(key, logits.shape, jnp.float32)
  indices, valid = variable_topk(z, jnp.sum(z > 0, axis=-1), k_max)
  mask = indices_to_mask(indices, logits.shape[-1], valid)
  return MaskSample(indices, indices, mask, valid)


def sized_topk_sample(key: jax.Array, logits: jnp.ndarray, count_logits: jnp.ndarray,
                      counts: tuple[int, ...]) -> MaskSample:
  """Level ~ Categorical(count_logits [..., L]), c = counts[level]; the kept tokens are the first c of
  a Gumbel-top-max(counts) order, i.e. a Plackett-Luce draw of c tokens. `indices` holds them in
  ascending order, then padding with index 0 (valid=False), as `bernoulli_sample`."""
  k_max = max(counts)
  kc, ko = jax.random.split(key)
  level = jax.random.categorical(kc, count_logits.astype(jnp.float32), axis=-1).astype(jnp.int32)
  count = jnp.asarray(counts, jnp.int32)[level]
  g = jax.random.gumbel(ko, logits.shape, jnp.float32)
  _, order = jax.lax.top_k(logits.astype(jnp.float32) + g, k_max)
  n = logits.shape[-1]
  kept = jnp.sort(jnp.where(jnp.arange(k_max) < count[..., None], order, n), axis=-1).astype(jnp.int32)
  valid = kept < n
  indices = jnp.where(valid, kept, 0)
  return MaskSample(indices, order.astype(jnp.int32), indices_to_mask(indices, n, valid), valid, level, count)


SAMPLERS: dict[str, Callable[..., MaskSample]] = {
    "gumbel_topk": gumbel_topk_sample,
    "bernoulli": bernoulli_sample,
    "sized_topk": sized_topk_sample,  # needs count logits: `sized_group_sample`
}


def group_sample(key: jax.Array, logits: jnp.ndarray, k: int, group_size: int,
                 sampler: str = "gumbel_topk") -> MaskSample:
  """G independent samples per row: logits [B, N] -> MaskSample with leaves [B, G, ...].

  For "bernoulli", k is the static upper bound k_max; "sized_topk" goes through `sized_group_sample`.
  """
  if sampler == "sized_topk":
    raise ValueError("sampler 'sized_topk' needs count logits: use sized_group_sample")
  fn = SAMPLERS[sampler]
  keys = jax.random.split(key, group_size)
  return jax.vmap(lambda kk: fn(kk, logits, k), out_axes=1)(keys)


def explore_count_logits(count_logits: jnp.ndarray, explore: float) -> jnp.ndarray:
  """log((1 - explore) * softmax(count_logits) + explore / L): the count distribution with a uniform
  share, so that a group's sizes keep differing (and the compression term keeps acting) even after
  the count head has become sure; explore=0 returns log_softmax(count_logits)."""
  logp = jax.nn.log_softmax(count_logits.astype(jnp.float32), axis=-1)
  if explore == 0.0:
    return logp
  uniform = jnp.log(explore / count_logits.shape[-1])
  return jnp.logaddexp(jnp.log1p(-explore) + logp, uniform)


def sized_group_sample(key: jax.Array, logits: jnp.ndarray, count_logits: jnp.ndarray,
                       counts: tuple[int, ...], group_size: int) -> MaskSample:
  """G independent sized_topk samples per row: logits [B, N], count logits [B, L] -> leaves [B, G, ...]."""
  keys = jax.random.split(key, group_size)
  return jax.vmap(lambda kk: sized_topk_sample(kk, logits, count_logits, counts), out_axes=1)(keys)


def _tail_logsumexp(x: jnp.ndarray) -> jnp.ndarray:
  """out[..., j] = logsumexp(x[..., j:]) over a short axis, via a triangular mask."""
  n = x.shape[-1]
  upper = jnp.arange(n)[None, :] >= jnp.arange(n)[:, None]  # [j, i]: i >= j
  return jax.nn.logsumexp(jnp.where(upper, x[..., None, :], -jnp.inf), axis=-1)


def reverse_cumlogsumexp(x: jnp.ndarray, block: int = 64) -> jnp.ndarray:
  """Stable out[..., j] = logsumexp(x[..., j:]) in O(k * block) memory.

  Same values as lax.cumlogsumexp(reverse=True), but built from masked reductions, which
  compile in well under a second (the scan-based op takes ~7 s to compile for k ~ 600 on CPU).
  """
  k = x.shape[-1]
  if k <= block:
    return _tail_logsumexp(x)
  nb = -(-k // block)
  pad = jnp.full(x.shape[:-1] + (nb * block - k,), -1e30, x.dtype)  # finite: no NaN grads
  xb = jnp.concatenate([x, pad], axis=-1).reshape(x.shape[:-1] + (nb, block))
  within = _tail_logsumexp(xb)  # [..., nb, block]: tail inside each block
  later = jnp.arange(nb)[None, :] > jnp.arange(nb)[:, None]  # blocks strictly after
  after = jax.nn.logsumexp(jnp.where(later, within[..., None, :, 0], -jnp.inf), axis=-1)
  out = jnp.logaddexp(within, after[..., None])
  return out.reshape(x.shape[:-1] + (nb * block,))[..., :k]


def plackett_luce_step_logprobs(logits: jnp.ndarray, order: jnp.ndarray) -> jnp.ndarray:
  """[..., k]: step j's l_{o_j} - logsumexp(l over tokens not chosen before step j).

  Stable O(N + k): the remaining set at step j is (never-chosen tokens) U {o_j, ..., o_{k-1}},
  so its logsumexp is logaddexp(lse(unchosen), reverse cumulative lse of the chosen logits).
  The first c steps are log P(the first c of the order), whatever the order's length.
  """
  logits = logits.astype(jnp.float32)
  chosen = jnp.take_along_axis(logits, order, axis=-1)  # [..., k]
  picked = indices_to_mask(order, logits.shape[-1])
  rest = jax.nn.logsumexp(jnp.where(picked, -jnp.inf, logits), axis=-1, keepdims=True)
  tail = reverse_cumlogsumexp(chosen)
  return chosen - jnp.logaddexp(rest, tail)


def plackett_luce_logprob(logits: jnp.ndarray, order: jnp.ndarray) -> jnp.ndarray:
  """log P(order) = sum_j [l_{o_j} - logsumexp(l over tokens not chosen before step j)]."""
  return jnp.sum(plackett_luce_step_logprobs(logits, order), axis=-1)


def sized_plackett_luce_logprob(logits: jnp.ndarray, count_logits: jnp.ndarray,
                                sample: MaskSample) -> jnp.ndarray:
  """log P(level) + log P(first `count` tokens of the order): the exact log-prob of a sized_topk draw."""
  steps = plackett_luce_step_logprobs(logits, sample.order)
  prefix = jnp.arange(steps.shape[-1]) < sample.count[..., None]
  level_lp = jnp.take_along_axis(jax.nn.log_softmax(count_logits.astype(jnp.float32), axis=-1),
                                 sample.level[..., None], axis=-1)[..., 0]
  return level_lp + jnp.sum(jnp.where(prefix, steps, 0.0), axis=-1)


def cheap_set_logprob(logits: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """sum over kept tokens of log_softmax(logits): [..., N] -> [...]."""
  lsm = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.where(mask, lsm, 0.0), axis=-1)


def per_token_keep_logprob(logits: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """mask*log_sigmoid(l) + (1-mask)*log_sigmoid(-l), elementwise [..., N]."""
  logits = logits.astype(jnp.float32)
  return jnp.where(mask, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits))


def bernoulli_logprob(logits: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """Sum of per-token keep/drop log-probs over all N tokens (ignores the k_max truncation)."""
  return jnp.sum(per_token_keep_logprob(logits, mask), axis=-1)


LOGPROBS: dict[str, Callable[[jnp.ndarray, MaskSample, jnp.ndarray | None], jnp.ndarray]] = {
    "plackett_luce": lambda logits, s, c: plackett_luce_logprob(logits, s.order),
    "cheap_set": lambda logits, s, c: cheap_set_logprob(logits, s.mask),
    "bernoulli": lambda logits, s, c: bernoulli_logprob(logits, s.mask),
    "per_token": lambda logits, s, c: per_token_keep_logprob(logits, s.mask),
    "sized_plackett_luce": lambda logits, s, c: sized_plackett_luce_logprob(logits, c, s),
}


def _broadcast_rows(x: jnp.ndarray, shape: tuple[int, ...]) -> jnp.ndarray:
  """[B, ..., X] against grouped leaves [B, G, ..., X]."""
  extra = len(shape) - x.ndim
  return jnp.broadcast_to(x.reshape(x.shape[:1] + (1,) * extra + x.shape[1:]), shape)


def mask_logprob(logits: jnp.ndarray, sample: MaskSample, kind: str = "plackett_luce",
                 count_logits: jnp.ndarray | None = None) -> jnp.ndarray:
  """Re-evaluate a sample's log-prob under `logits` (and `count_logits` [B, L] for "sized_plackett_luce").

  logits [B, N] are broadcast against a grouped sample [B, G, ...]. Returns [B, G]
  ([B, G, N] for "per_token").
  """
  logits = _broadcast_rows(logits, sample.mask.shape)
  if kind == "sized_plackett_luce":
    if count_logits is None or sample.level is None:
      raise ValueError("logprob 'sized_plackett_luce' needs count logits and a sized_topk sample")
    count_logits = _broadcast_rows(count_logits, sample.level.shape + count_logits.shape[-1:])
  return LOGPROBS[kind](logits, sample, count_logits)
