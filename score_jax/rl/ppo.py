"""CaCoVID's per-token PPO: every token (or frame) is a keep/drop action with P(keep) = sigmoid(logit).

For rollout c with keep mask m_c [N] and advantage A_c:
  ratio_i = exp(logp_new(m_ci) - logp_old(m_ci)), logp(keep) = log_sigmoid(l_i), logp(drop) = log_sigmoid(-l_i);
  loss_i = -min(ratio_i * A_c, clip(ratio_i, 1 - eps_low, 1 + eps_high) * A_c), asymmetric 0.2 / 0.28;
  re-weighting (tokens): a kept token weighs (1 - f_c), a dropped one f_c (f_c = kept fraction of the
  rollout), so both sides weigh the same however few tokens are kept; weighted mean per rollout
  (sum w l / (sum w + 1e-7)), then the mean over (valid) rollouts. Frames: the same without re-weighting.
  Optional k3 KL to a uniform keep policy (log 0.5 for both actions), weighted the same way.
logp_old comes from the logits of the first pass over the sample (CaCoVID keeps them fixed while the
sample is revisited), so it is given as logits, not per rollout.
Advantages: A = (R - mean) / (std + 1e-4) over all rollouts of one kind of this sample (torch's
unbiased std, ddof=1, as the authors' code; a constant group gets exactly 0); `group_advantage_by` does the
same within groups of rollouts (e.g. of one rate).
`rollout_ppo_loss` is the alternative with one action per rollout: ratio = exp(log P_new(mask) - log P_old(mask))
under the sampler that drew the mask (`ocss.ocss_set_logprob`, `ocss.frame_set_logprob`), same clip; a rollout
impossible under the old policy (-inf) is left out. `keep_drop_kl` is the KL term of either.
Reference: CaCoVID (arXiv 2602.01649) training code; DAPO (arXiv 2503.14476) for the asymmetric clip.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from score_jax.rl.losses import MAX_LOG_RATIO, kl_k3
from score_jax.rl.sampling import per_token_keep_logprob

LOG_HALF = math.log(0.5)


def group_advantage(rewards: jnp.ndarray, valid: jnp.ndarray | None = None, eps: float = 1e-4,
                    ddof: int = 1) -> jnp.ndarray:
  """(R - mean) / (std + eps) over the valid entries of the last axis; invalid entries get 0."""
  r = rewards.astype(jnp.float32)
  v = jnp.ones(r.shape, bool) if valid is None else valid.astype(bool)
  n = jnp.sum(v, axis=-1, keepdims=True)
  mean = jnp.sum(jnp.where(v, r, 0.0), axis=-1, keepdims=True) / jnp.maximum(n, 1)
  sq = jnp.sum(jnp.where(v, (r - mean) ** 2, 0.0), axis=-1, keepdims=True)
  std = jnp.sqrt(sq / jnp.maximum(n - ddof, 1))
  return jnp.where(v, (r - mean) / (std + eps), 0.0)


def group_advantage_by(rewards: jnp.ndarray, valid: jnp.ndarray, groups: jnp.ndarray, num_groups: int,
                       eps: float = 1e-4, ddof: int = 1) -> jnp.ndarray:
  """`group_advantage` within each group id (int [..., C] in [0, num_groups)) of the last axis: rollouts
  are compared only with the rollouts of their own group (e.g. the rate each was drawn at)."""
  out = jnp.zeros(rewards.shape, jnp.float32)
  for g in range(num_groups):
    inside = valid.astype(bool) & (groups == g)
    out = out + group_advantage(rewards, inside, eps, ddof)  # 0 outside the group
  return out


def keep_drop_weights(mask: jnp.ndarray) -> jnp.ndarray:
  """Kept entries weigh (1 - f), dropped ones f, with f the kept fraction of the last axis."""
  m = mask.astype(jnp.float32)
  f = jnp.mean(m, axis=-1, keepdims=True)
  return m * (1.0 - f) + (1.0 - m) * f


def keep_drop_ppo_loss(logits_new: jnp.ndarray, logits_old: jnp.ndarray, masks: jnp.ndarray,
                       advantages: jnp.ndarray, valid: jnp.ndarray | None = None, *, eps_low: float = 0.2,
                       eps_high: float = 0.28, reweight: bool = True,
                       kl_coef: float = 0.0) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Per-action clipped PPO over C stored rollouts of each sample.

  logits_new / logits_old: [B, N] keep logits (old ones are treated as constants);
  masks: bool [B, C, N] kept actions; advantages: [B, C]; valid: bool [B, C] rollouts that count
  (e.g. filled replay-memory slots). Returns (loss, aux) with aux: pg_loss, kl, clip_fraction, ratio_mean.
  """
  b, c, n = masks.shape
  if logits_new.shape != (b, n) or logits_old.shape != (b, n):
    raise ValueError(f"logits must be [B={b}, N={n}]; got {logits_new.shape}, {logits_old.shape}.")
  lp_new = per_token_keep_logprob(jnp.broadcast_to(logits_new[:, None], masks.shape), masks)
  lp_old = per_token_keep_logprob(jnp.broadcast_to(jax.lax.stop_gradient(logits_old)[:, None], masks.shape),
                                  masks)
  ratio = jnp.exp(jnp.clip(lp_new - lp_old, -MAX_LOG_RATIO, MAX_LOG_RATIO))
  adv = jax.lax.stop_gradient(advantages.astype(jnp.float32))[..., None]
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
  per_action = -jnp.minimum(unclipped, clipped)
  w = keep_drop_weights(masks) if reweight else jnp.ones(masks.shape, jnp.float32)

  def rollout_mean(x):  # weighted mean per rollout, then mean over valid rollouts
    per_rollout = jnp.sum(x * w, axis=-1) / (jnp.sum(w, axis=-1) + 1e-7)
    rv = jnp.ones((b, c), jnp.float32) if valid is None else valid.astype(jnp.float32)
    return jnp.sum(per_rollout * rv) / jnp.maximum(jnp.sum(rv), 1.0)

  pg = rollout_mean(per_action)
  kl = rollout_mean(kl_k3(lp_new, jnp.full(lp_new.shape, LOG_HALF)))
  loss = pg + kl_coef * kl if kl_coef else pg
  aux = {"pg_loss": pg, "kl": jax.lax.stop_gradient(kl),
         "clip_fraction": rollout_mean((clipped < unclipped).astype(jnp.float32)),
         "ratio_mean": rollout_mean(jax.lax.stop_gradient(ratio))}
  return loss, aux


def keep_drop_kl(logits_new: jnp.ndarray, masks: jnp.ndarray, valid: jnp.ndarray | None = None,
                 reweight: bool = True) -> jnp.ndarray:
  """The k3 KL of the per-action keep/drop probabilities to a uniform 0.5 policy, averaged as
  `keep_drop_ppo_loss` averages (weighted mean per rollout, then mean over valid rollouts)."""
  lp = per_token_keep_logprob(jnp.broadcast_to(logits_new[:, None], masks.shape), masks)
  w = keep_drop_weights(masks) if reweight else jnp.ones(masks.shape, jnp.float32)
  per_rollout = jnp.sum(kl_k3(lp, jnp.full(lp.shape, LOG_HALF)) * w, axis=-1) / (jnp.sum(w, axis=-1) + 1e-7)
  rv = jnp.ones(masks.shape[:2], jnp.float32) if valid is None else valid.astype(jnp.float32)
  return jnp.sum(per_rollout * rv) / jnp.maximum(jnp.sum(rv), 1.0)


def rollout_ppo_loss(logp_new: jnp.ndarray, logp_old: jnp.ndarray, advantages: jnp.ndarray,
                     valid: jnp.ndarray | None = None, *, eps_low: float = 0.2,
                     eps_high: float = 0.28) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Clipped PPO with one action per rollout: log-probs, advantages and valid [B, C] -> (loss, aux).

  ratio = exp(clip(logp_new - logp_old, +-MAX_LOG_RATIO)) (logp_old constant); -inf under the new policy
  gives ratio ~0 (no gradient); rollouts with a non-finite logp_old do not count. Mean over counted rollouts.
  """
  if logp_new.shape != logp_old.shape or logp_new.shape != advantages.shape:
    raise ValueError(f"log-probs and advantages must share one [B, C] shape; got {logp_new.shape}, "
                     f"{logp_old.shape}, {advantages.shape}.")
  old = jax.lax.stop_gradient(logp_old.astype(jnp.float32))
  counts = jnp.isfinite(old) & (True if valid is None else valid.astype(bool))
  log_ratio = jnp.clip(logp_new - jnp.where(counts, old, 0.0), -MAX_LOG_RATIO, MAX_LOG_RATIO)
  log_ratio = jnp.where(counts, log_ratio, 0.0)
  ratio = jnp.exp(log_ratio)
  adv = jax.lax.stop_gradient(advantages.astype(jnp.float32))
  unclipped = ratio * adv
  clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
  w = counts.astype(jnp.float32)
  mean = lambda x: jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)
  pg = mean(-jnp.minimum(unclipped, clipped))
  return pg, {"pg_loss": pg, "clip_fraction": mean((clipped < unclipped).astype(jnp.float32)),
              "ratio_mean": mean(jax.lax.stop_gradient(ratio))}
