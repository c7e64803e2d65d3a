"""Rollout rewards (pure jnp): multiple-choice correctness, answer margin, compression."""
from __future__ import annotations

import jax.numpy as jnp


def mc_correct(option_logprobs: jnp.ndarray, answer: jnp.ndarray) -> jnp.ndarray:
  """1.0 where argmax over options == answer else 0.0: [..., n_options], [...] -> [...]."""
  return (jnp.argmax(option_logprobs, axis=-1) == answer).astype(jnp.float32)


def answer_margin(option_logprobs: jnp.ndarray, answer: jnp.ndarray) -> jnp.ndarray:
  """logp[answer] - max over the other options (> 0 iff the answer wins strictly)."""
  lp = option_logprobs.astype(jnp.float32)
  is_ans = jnp.arange(lp.shape[-1]) == answer[..., None]
  right = jnp.sum(jnp.where(is_ans, lp, 0.0), axis=-1)
  best_other = jnp.max(jnp.where(is_ans, -jnp.inf, lp), axis=-1)
  return right - best_other


def kept_fraction(mask_or_count: jnp.ndarray, n_total: int) -> jnp.ndarray:
  """Fraction kept from a bool mask [..., n_total] (summed) or a kept count [...]."""
  x = jnp.asarray(mask_or_count)
  count = jnp.sum(x, axis=-1) if x.dtype == jnp.bool_ else x
  return count.astype(jnp.float32) / n_total


def compression_reward(mask_or_count: jnp.ndarray, n_total: int) -> jnp.ndarray:
  """Fraction of tokens dropped, 1 - kept / n_total (bool mask [..., N] or count [...])."""
  return 1.0 - kept_fraction(mask_or_count, n_total)


def budget_reward(mask_or_count: jnp.ndarray, n_total: int, target_ratio: float) -> jnp.ndarray:
  """-|kept fraction - target_ratio|: efficiency term for variable-size (bernoulli) masks."""
  return -jnp.abs(kept_fraction(mask_or_count, n_total) - target_ratio)


def budget_hinge_reward(mask_or_count: jnp.ndarray, n_total: int, target_ratio: float) -> jnp.ndarray:
  """1 - max(kept fraction, target_ratio): sparsity pays down to the budget, not below it."""
  return 1.0 - jnp.maximum(kept_fraction(mask_or_count, n_total), target_ratio)


# Compression rewards by name (`rl.comp_reward`): f(mask or count, n_total, budget) -> [...].
COMP_REWARDS = {
    "sparsity": lambda m, n, budget: compression_reward(m, n),
    "budget_hinge": budget_hinge_reward,
    "budget_abs": budget_reward,
}
