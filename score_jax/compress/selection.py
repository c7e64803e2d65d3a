"""Static-shape top-k token selection (k is a Python int, so everything jits).

Selected indices are always returned sorted ascending, so kept tokens stay in their original
(frame, position) order.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def budget(n: int, ratio: float) -> int:
  """Number of tokens kept at retention `ratio` of `n`: round half up, clamped to [1, n].

  ratio * n is first rounded to 9 decimals so float noise (0.1 * 6272 = 627.2000000000001)
  cannot flip the result; then exact halves round up (e.g. 0.25 * 10 = 2.5 -> 3), unlike
  Python's banker's `round`.
  """
  k = int(math.floor(round(ratio * n, 9) + 0.5))
  return max(1, min(n, k))


def topk_indices(scores: jnp.ndarray, k: int) -> jnp.ndarray:
  """[..., N] scores -> int32 [..., k] indices of the k largest, sorted ascending."""
  _, idx = jax.lax.top_k(scores, k)
  return jnp.sort(idx, axis=-1).astype(jnp.int32)


def variable_topk(scores: jnp.ndarray, count: jnp.ndarray, k_max: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The `count` (per row, clipped to [0, k_max]) highest-scoring of [..., N] under a static cap.

  Returns (indices int32 [..., k_max], valid bool [..., k_max]): the kept indices in ascending order
  first, then padding slots (index 0, valid False), the layout prefill's `keep_valid` expects.
  """
  n = scores.shape[-1]
  _, top = jax.lax.top_k(scores, k_max)  # best first
  keep = jnp.arange(k_max) < jnp.clip(count, 0, k_max)[..., None]
  key = jnp.sort(jnp.where(keep, top, n), axis=-1).astype(jnp.int32)
  valid = key < n
  return jnp.where(valid, key, 0), valid


def expected_count(logits: jnp.ndarray, k_max: int) -> jnp.ndarray:
  """A keep/drop policy's own budget for each row: round(sum of sigmoid(logits)), clipped to [1, k_max]."""
  return jnp.clip(jnp.round(jnp.sum(jax.nn.sigmoid(logits.astype(jnp.float32)), axis=-1)), 1,
                  k_max).astype(jnp.int32)


def level_count(count_logits: jnp.ndarray, counts: tuple[int, ...], k_max: int) -> jnp.ndarray:
  """A sized policy's own budget for each row: round(sum_l softmax(count_logits)_l * counts[l]) in [1, k_max]."""
  mean = jax.nn.softmax(count_logits.astype(jnp.float32), axis=-1) @ jnp.asarray(counts, jnp.float32)
  return jnp.clip(jnp.round(mean), 1, k_max).astype(jnp.int32)


def _tail_log_mass(logits: jnp.ndarray) -> jnp.ndarray:
  """[..., N]: out[..., c] = log of the softmax(logits) probability outside the c highest-scoring tokens."""
  from score_jax.rl.sampling import reverse_cumlogsumexp
  ranked = jnp.sort(logits.astype(jnp.float32), axis=-1)[..., ::-1]
  return reverse_cumlogsumexp(ranked) - jax.nn.logsumexp(ranked, axis=-1, keepdims=True)


def _count_above(log_mass: jnp.ndarray, tail: float, k_max: int, k_min: int) -> jnp.ndarray:
  return jnp.clip(jnp.sum(log_mass > math.log(tail), axis=-1), k_min, k_max).astype(jnp.int32)


def tail_count(logits: jnp.ndarray, tail: float, k_max: int, k_min: int = 1) -> jnp.ndarray:
  """A scorer's own budget for each row: the fewest highest-scoring tokens that leave at most `tail`
  (a Python float) of the softmax(logits) probability outside, clipped to [k_min, k_max]: peaked scores
  keep few tokens, flat ones many. Computed in log space, so tails far below float precision work."""
  if not 1 <= k_min <= k_max:
    raise ValueError(f"tail_count needs 1 <= k_min={k_min} <= k_max={k_max}.")
  return _count_above(_tail_log_mass(logits), tail, k_max, k_min)


def calibrate_tail(logits: jnp.ndarray, target: float, k_max: int, k_min: int = 1, iters: int = 60) -> float:
  """The tail at which `tail_count` (same k_min, k_max) keeps a mean retention of at most `target` over
  the rows of logits [R, N] (bisection on log10(tail) in [-40, 0]; more tail, fewer tokens)."""
  n = logits.shape[-1]
  if k_min / n > target:
    raise ValueError(f"a floor of {k_min} of {n} tokens already exceeds the target retention {target}.")
  log_mass = _tail_log_mass(logits)  # sorted once; each bisection step only counts
  lo, hi = -40.0, 0.0  # retention(10**hi) <= target is what is kept
  for _ in range(iters):
    mid = (lo + hi) / 2
    if float(jnp.mean(_count_above(log_mass, 10.0 ** mid, k_max, k_min))) / n <= target:
      hi = mid
    else:
      lo = mid
  return 10.0 ** hi


def per_frame_topk_indices(scores: jnp.ndarray, k_per_frame: int) -> jnp.ndarray:
  """[B, T, P] scores -> int32 [B, T*k_per_frame] flat indices (t*P + p), sorted ascending."""
  b, t, p = scores.shape
  local = topk_indices(scores, k_per_frame)  # [B, T, k], ascending within each frame
  flat = local + (jnp.arange(t, dtype=jnp.int32) * p)[None, :, None]
  return flat.reshape(b, t * k_per_frame)  # frame blocks are increasing, so already sorted


def indices_to_mask(idx: jnp.ndarray, n: int, valid: jnp.ndarray | None = None) -> jnp.ndarray:
  """int [..., k] indices -> bool [..., n] mask; entries with valid == False are ignored."""
  lead = idx.shape[:-1]
  flat = idx.reshape(-1, idx.shape[-1])
  vals = jnp.ones(flat.shape, bool) if valid is None else valid.reshape(flat.shape)
  rows = jnp.arange(flat.shape[0])[:, None]
  mask = jnp.zeros((flat.shape[0], n), bool).at[rows, flat].max(vals, mode="drop")
  return mask.reshape(*lead, n)
