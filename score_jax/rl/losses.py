"""Clipped policy-gradient (PPO/GRPO) surrogate, the k3 KL estimator and the keep-logit entropy.

Log-probs may be per rollout [B, G] or per token [B, G, N]; advantages [B, G] are broadcast
over trailing token axes. `mask` (bool or float weights, broadcastable to the log-probs)
selects the entries that enter the mean.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_LOG_RATIO = 20.0


def _expand(x: jnp.ndarray, ndim: int) -> jnp.ndarray:
  return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def _weights(mask: jnp.ndarray | None, shape: tuple[int, ...]) -> jnp.ndarray:
  if mask is None:
    return jnp.ones(shape, jnp.float32)
  return jnp.broadcast_to(_expand(jnp.asarray(mask), len(shape)), shape).astype(jnp.float32)


def masked_mean(x: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
  return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1e-8)


def clipped_pg_loss(logp_new: jnp.ndarray, logp_old: jnp.ndarray, advantages: jnp.ndarray,
                    mask: jnp.ndarray | None = None, eps_low: float = 0.2,
                    eps_high: float = 0.2) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """mean over valid of -min(ratio*A, clip(ratio, 1-eps_low, 1+eps_high)*A).

  ratio = exp(clip(logp_new - stop_grad(logp_old), -20, 20)). aux: clip_fraction (share of
  valid entries where the clipped term is the active minimum, i.e. zero gradient),
  ratio_mean, ratio_min, ratio_max over valid entries.
  """
  shape = logp_new.shape
  adv = jnp.broadcast_to(_expand(jax.lax.stop_gradient(advantages), len(shape)), shape)
  w = _weights(mask, shape)
  log_ratio = jnp.clip(logp_new - jax.lax.stop_gradient(logp_old), -MAX_LOG_RATIO, MAX_LOG_RATIO)
  ratio = jnp.exp(log_ratio)
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
  loss = masked_mean(-jnp.minimum(unclipped, clipped), w)
  valid = w > 0
  r = jax.lax.stop_gradient(ratio)
  aux = {
      "clip_fraction": masked_mean((clipped < unclipped).astype(jnp.float32), w),
      "ratio_mean": masked_mean(r, w),
      "ratio_min": jnp.min(jnp.where(valid, r, jnp.inf)),
      "ratio_max": jnp.max(jnp.where(valid, r, -jnp.inf)),
  }
  return loss, aux


def kl_k3(logp_new: jnp.ndarray, logp_ref: jnp.ndarray) -> jnp.ndarray:
  """Elementwise k3 estimator of KL(new || ref): exp(d) - d - 1, d = logp_ref - logp_new."""
  d = jnp.clip(logp_ref - logp_new, -MAX_LOG_RATIO, MAX_LOG_RATIO)
  return jnp.exp(d) - d - 1.0


def policy_loss(logp_new: jnp.ndarray, logp_old: jnp.ndarray, advantages: jnp.ndarray,
                mask: jnp.ndarray | None = None, logp_ref: jnp.ndarray | None = None,
                kl_coef: float = 0.0, eps_low: float = 0.2,
                eps_high: float = 0.2) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """clipped_pg_loss + kl_coef * masked mean of kl_k3(logp_new, logp_ref); no KL if kl_coef == 0."""
  pg, aux = clipped_pg_loss(logp_new, logp_old, advantages, mask, eps_low, eps_high)
  aux = {"pg_loss": pg, **aux}
  if kl_coef == 0.0:
    return pg, aux
  if logp_ref is None:
    raise ValueError("kl_coef != 0 needs logp_ref")
  kl = masked_mean(kl_k3(logp_new, jax.lax.stop_gradient(logp_ref)), _weights(mask, logp_new.shape))
  aux["kl"] = kl
  return pg + kl_coef * kl, aux


def token_entropy(logits: jnp.ndarray) -> jnp.ndarray:
  """Mean over leading axes of the entropy of softmax(logits) over the last (token) axis, i.e. of
  the first draw of a Plackett-Luce selection: log N for equal logits, -> 0 as one token dominates."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1))
