"""Group-wise advantage estimators over rewards shaped [B, G] (G rollouts per sample).

Every estimator has the signature
  fn(task_reward [B, G], comp_reward [B, G] | None = None, *, correct=None,
     comp_weight=1.0, eps=1e-6, **options) -> [B, G]   (keep_drop: a pair, see below)

`correct` defaults to task_reward > 0. norm_G(r) = (r - mean_G r) / (std_G r + eps) with
ddof=0; a group whose rewards are all equal gets exactly zero advantage.

  "grpo":      norm_G(task + w * comp) on the summed reward (ungated; comp=None -> task only).
  "split":     SCORE default (alias "decoupled"): norm_G(task) + w * norm_G(comp * correct);
               compression is credited only to right answers, each term normalised separately.
  "keep_drop": pair (A_keep, A_drop) for kept- and dropped-token actions:
               A_keep = norm_G(task), A_drop = norm_G(task) + w * norm_G(comp * correct),
               i.e. both action types share the task credit, only drops earn compression credit.
               Use `token_advantages` to expand it to [B, G, N].
  "pos_neg":   separate normalisation of positive and negative deviations of the gated reward
               r = task + w * comp * correct: d = r - mean_G r, then
               A = pos_weight * d / (rms_G(d | d > 0) + eps) where d > 0,
                   neg_weight * d / (rms_G(d | d < 0) + eps) where d < 0, else 0,
               so each side has unit RMS regardless of the group's success rate.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

Advantage = jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]
_REGISTRY: dict[str, Callable[..., Advantage]] = {}


def register_advantage(*names: str) -> Callable:
  """Decorator registering an estimator under one or more names."""
  def wrap(fn: Callable[..., Advantage]) -> Callable[..., Advantage]:
    for name in names:
      if name in _REGISTRY:
        raise ValueError(f"advantage {name!r} already registered")
      _REGISTRY[name] = fn
    return fn
  return wrap


def get_advantage(name: str) -> Callable[..., Advantage]:
  if name not in _REGISTRY:
    raise KeyError(f"unknown advantage {name!r}; known: {sorted(_REGISTRY)}")
  return _REGISTRY[name]


def group_normalize(r: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
  """(r - mean) / (std + eps) over the last (group) axis; constant groups -> 0."""
  r = r.astype(jnp.float32)
  mean = jnp.mean(r, axis=-1, keepdims=True)
  std = jnp.std(r, axis=-1, keepdims=True)
  const = jnp.max(r, axis=-1, keepdims=True) == jnp.min(r, axis=-1, keepdims=True)
  return jnp.where(const, 0.0, (r - mean) / (std + eps))


def _gated_comp(task, comp, correct):
  if comp is None:
    return jnp.zeros_like(task, jnp.float32)
  ok = (task > 0) if correct is None else correct.astype(bool)
  return comp * ok


@register_advantage("grpo")
def grpo_advantage(task_reward, comp_reward=None, *, correct=None, comp_weight=1.0, eps=1e-6):
  del correct
  r = task_reward if comp_reward is None else task_reward + comp_weight * comp_reward
  return group_normalize(r, eps)


@register_advantage("split", "decoupled")
def split_advantage(task_reward, comp_reward=None, *, correct=None, comp_weight=1.0, eps=1e-6):
  comp = _gated_comp(task_reward, comp_reward, correct)
  return group_normalize(task_reward, eps) + comp_weight * group_normalize(comp, eps)


@register_advantage("keep_drop")
def keep_drop_advantage(task_reward, comp_reward=None, *, correct=None, comp_weight=1.0,
                        eps=1e-6):
  a_keep = group_normalize(task_reward, eps)
  comp = _gated_comp(task_reward, comp_reward, correct)
  return a_keep, a_keep + comp_weight * group_normalize(comp, eps)


@register_advantage("pos_neg")
def pos_neg_advantage(task_reward, comp_reward=None, *, correct=None, comp_weight=1.0,
                      eps=1e-6, pos_weight=1.0, neg_weight=1.0):
  r = task_reward + comp_weight * _gated_comp(task_reward, comp_reward, correct)
  r = r.astype(jnp.float32)
  d = r - jnp.mean(r, axis=-1, keepdims=True)
  const = jnp.max(r, axis=-1, keepdims=True) == jnp.min(r, axis=-1, keepdims=True)
  pos, neg = (d > 0) & ~const, (d < 0) & ~const

  def rms(sel):
    n = jnp.maximum(jnp.sum(sel, axis=-1, keepdims=True), 1)
    return jnp.sqrt(jnp.sum(jnp.where(sel, d * d, 0.0), axis=-1, keepdims=True) / n)

  a = jnp.where(pos, pos_weight * d / (rms(pos) + eps), 0.0)
  return jnp.where(neg, neg_weight * d / (rms(neg) + eps), a)


def token_advantages(adv: Advantage, mask: jnp.ndarray) -> jnp.ndarray:
  """Per-token advantages [B, G, N]: broadcast [B, G], or pick A_keep / A_drop by the mask."""
  if isinstance(adv, tuple):
    a_keep, a_drop = adv
    return jnp.where(mask, a_keep[..., None], a_drop[..., None])
  return jnp.broadcast_to(adv[..., None], mask.shape)
