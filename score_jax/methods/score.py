"""SCORE: surprise-augmented state, group-sampled keep masks, split-advantage clipped policy gradient."""
from __future__ import annotations

import math

import jax

from score_jax.compress.policy import ScorePolicy
from score_jax.compress.surprise import check_still_cosine
from score_jax.compress.selection import budget
from score_jax.methods.keep_policy import KeepPolicy
from score_jax.models import sharding as shd
from score_jax.rl import train_step as ts


def make_policy(config) -> ScorePolicy:
  """The policy network; a keep/drop (bernoulli) policy starts at its target retention: the keep
  logit's bias is logit(target), so the first rollouts keep about that fraction. A sized_topk policy
  gets a count head over `rl.count_levels`."""
  p, s = config.policy, settings(config)
  keep_drop = s.sampler == "bernoulli"
  bias = float(math.log(s.target / (1.0 - s.target))) if keep_drop and s.target < 1.0 else 0.0
  return ScorePolicy(hidden=p.hidden, num_layers=p.num_layers, num_heads=p.num_heads,
                     use_residual=p.use_residual, use_surprise_scalar=p.use_surprise_scalar,
                     use_surprise_memory=p.get("use_surprise_memory", False),
                     first_frame=p.first_frame, query_conditioned=p.get("query_conditioned", False),
                     keep_bias=bias, count_levels=len(s.count_levels) if s.sampler == "sized_topk" else 0)


def uses_question(config) -> bool:
  return bool(config.policy.get("query_conditioned", False))


def settings(config) -> ts.RLSettings:
  """The RL settings; `score_eval` is checked here too, so that a bad value stops a run before training."""
  adaptive_inference(config)
  dedup(config)
  return ts.RLSettings(**config.rl.to_dict())


# The inference section and the settings of it that `adaptive_inference` reads (`eval.takes_inference`).
INFERENCE = ("score_eval", ("tail", "cap", "floor", "dedup"))


def adaptive_inference(config) -> tuple[float, float, float]:
  """(score_eval.tail, score_eval.cap, 0 meaning rl.ratio, score_eval.floor) of the tail rule (`keep_fn`), checked."""
  inference = config.get("score_eval", {})
  tail, cap = float(inference.get("tail", 0.0)), float(inference.get("cap", 0.0)) or float(config.rl.ratio)
  floor = float(inference.get("floor", 0.0))
  if not 0.0 <= tail < 1.0:
    raise ValueError(f"score_eval.tail={tail} must be in [0, 1) (0: off).")
  if not 0.0 < cap <= 1.0:
    raise ValueError(f"score_eval.cap={cap} must be in (0, 1] (0: rl.ratio).")
  check_floor(floor, cap)
  if floor and not tail:
    raise ValueError(f"score_eval.floor={floor} applies to the tail rule only: set score_eval.tail too.")
  return tail, cap, floor


def dedup(config) -> float:
  """`score_eval.dedup`, checked: 0 (off) or the cosine of `surprise.still_places`; tokens at places still since
  frame 0 are kept only after every other token (`train_step.ranking_key`), in both inference modes."""
  return check_still_cosine(float(config.get("score_eval", {}).get("dedup", 0.0)), "score_eval.dedup")


def check_floor(floor: float, cap: float, names: tuple[str, str] = ("score_eval.floor", "score_eval.cap")) -> None:
  """ValueError unless 0 <= floor <= cap (the tail rule's smallest and largest retention; `names` for the message)."""
  if not 0.0 <= floor <= cap:
    raise ValueError(f"{names[0]}={floor} must be in [0, {names[1]}={cap}] (0: one token).")


def min_count(n: int, floor: float) -> int:
  """Fewest tokens the tail rule keeps of n: `budget(n, floor)`, one token when floor is 0."""
  return budget(n, floor) if floor else 1


def init_state(config, policy, tx, llm, key, mesh=None) -> ts.TrainState:
  """Fresh policy state; with a mesh, replicated on it (the layout `make_train_step` keeps)."""
  d, s = llm.cfg.text.hidden_size, settings(config)
  state = ts.init_train_state(policy, tx, (1, llm.num_frames, llm.cfg.tokens_per_frame, d), key,
                             with_reference=s.kl_coef > 0, question_shape=(1, llm.suffix_len, d),
                             comp_weight=s.comp_weight if s.budget_control != "none" else None)
  return state if mesh is None else jax.device_put(state, shd.replicated(mesh))


def make_train_step(config, policy, llm, tx, mesh):
  return ts.make_train_step(policy, llm.module, tx, settings(config), llm.option_ids, mesh, llm.params)


def keep_fn(config, policy, params) -> KeepPolicy:
  """Inference: `fixed` top-k at any ratio; for an adaptive sampler, or with `score_eval.tail`, also
  `adaptive` (its own budget per video under `score_eval.cap`, default the training cap `rl.ratio`);
  positions as the policy was trained (`rl.position_mode`)."""
  s, still = settings(config), dedup(config)

  def select(features, k):
    q = [features.get(name) for name in ts.QUESTION_KEYS]
    return ts.policy_keep_indices(policy, params, features["visual"], k, *q, dedup=still)

  tail, cap, floor = adaptive_inference(config)

  def adaptive(features, n):
    q = [features.get(name) for name in ts.QUESTION_KEYS]
    counts = s.counts(n) if s.sampler == "sized_topk" else ()
    return ts.policy_adaptive_keep(policy, params, features["visual"], budget(n, cap), *q, counts=counts,
                                   tail=tail, k_min=min_count(n, floor), dedup=still)
  return KeepPolicy(select, s.position_mode, adaptive if s.adaptive or tail else None)
