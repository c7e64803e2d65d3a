"""One jitted RL update of a keep-mask policy against the frozen video LLM.

    state, metrics = train_step(state, batch, key, llm_params)

1. policy logits over all visual tokens; 2. G keep-masks per sample (static k = ratio * N);
3. one batched prefill of the frozen LLM per mask -> option log-probs -> task and compression
rewards; 4. group advantages (registry name, "split" by default); 5. `ppo_epochs` clipped
policy-gradient updates on the same rollouts (optional KL to a frozen reference policy, optional
entropy bonus `entropy_coef` * H(softmax(logits)) against early collapse of the keep distribution).
Everything has static shapes: it compiles once per (batch shape, retention ratio).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from score_jax.compress.selection import budget
from score_jax.models import sharding as shd
from score_jax.models.prefill import POSITION_MODES
from score_jax.rl import advantages as adv_lib
from score_jax.rl import rewards as rew
from score_jax.rl.losses import policy_loss, token_entropy
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import (LOGPROBS, SAMPLERS, explore_count_logits, group_sample, mask_logprob,
                                   sized_group_sample)

TASK_REWARDS = ("correct", "margin", "correct+margin")
BUDGET_CONTROLS = ("none", "lagrange", "lagrange_two_sided")
MAX_COMP_WEIGHT = 10.0


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  opt_state: Any
  ref_params: Any = None
  comp_weight: Any = None  # rl.budget_control="lagrange*": the multiplier on the compression term


@dataclasses.dataclass(frozen=True)
class RLSettings:
  ratio: float = 0.1
  group_size: int = 8
  sampler: str = "gumbel_topk"
  logprob: str = "plackett_luce"
  advantage: str = "split"
  task_reward: str = "correct"
  comp_weight: float = 0.5
  eps_low: float = 0.2
  eps_high: float = 0.2
  kl_coef: float = 0.0
  entropy_coef: float = 0.0
  ppo_epochs: int = 1
  position_mode: str = "original"
  budget: float = 0.0           # target mean retention of a variable-size sampler (0: rl.ratio)
  comp_reward: str = "sparsity"  # rewards.COMP_REWARDS
  budget_control: str = "none"   # "lagrange[_two_sided]": comp_weight becomes a multiplier in the state
  budget_lr: float = 0.05        # its step size per update (see `lagrange_update`)
  count_levels: tuple = ()       # sized_topk: the retention levels a video's count is drawn from (<= ratio)
  count_explore: float = 0.2     # sized_topk: uniform share of the rollouts' level distribution

  def __post_init__(self):
    if not 0.0 < self.ratio <= 1.0:
      raise ValueError(f"rl.ratio={self.ratio} must be in (0, 1].")
    if not 0.0 <= self.budget <= self.ratio:
      raise ValueError(f"rl.budget={self.budget} must be in [0, rl.ratio={self.ratio}] (the cap).")
    if self.comp_reward not in rew.COMP_REWARDS:
      raise ValueError(f"rl.comp_reward={self.comp_reward!r}; expected one of {sorted(rew.COMP_REWARDS)}.")
    if self.budget_control not in BUDGET_CONTROLS:
      raise ValueError(f"rl.budget_control={self.budget_control!r}; expected one of {BUDGET_CONTROLS}.")
    if self.budget_control != "none" and not self.adaptive:
      raise ValueError(f"rl.budget_control={self.budget_control!r} steers a variable kept count; it needs "
                       "rl.sampler='bernoulli'.")
    if self.budget_lr < 0:
      raise ValueError(f"rl.budget_lr={self.budget_lr} must be >= 0.")
    if self.group_size < 2:
      raise ValueError(f"rl.group_size={self.group_size} must be at least 2 (group advantages).")
    if self.sampler not in SAMPLERS:
      raise ValueError(f"rl.sampler={self.sampler!r}; expected one of {sorted(SAMPLERS)}.")
    if self.logprob not in LOGPROBS:
      raise ValueError(f"rl.logprob={self.logprob!r}; expected one of {sorted(LOGPROBS)}.")
    adv_lib.get_advantage(self.advantage)
    if self.advantage == "keep_drop" and self.logprob != "per_token":
      raise ValueError("rl.advantage='keep_drop' gives per-token advantages; it needs rl.logprob='per_token'.")
    if (self.sampler == "sized_topk") != (self.logprob == "sized_plackett_luce"):
      raise ValueError("rl.sampler='sized_topk' and rl.logprob='sized_plackett_luce' go together "
                       f"(got sampler={self.sampler!r}, logprob={self.logprob!r}).")
    if not 0.0 <= self.count_explore < 1.0:
      raise ValueError(f"rl.count_explore={self.count_explore} must be in [0, 1).")
    if self.sampler == "sized_topk":
      if not self.count_levels or not all(0.0 < r <= self.ratio for r in self.count_levels):
        raise ValueError(f"rl.count_levels={self.count_levels} must be non-empty retention levels in "
                         f"(0, rl.ratio={self.ratio}] (the cap) for rl.sampler='sized_topk'.")
    if self.sampler == "bernoulli" and self.logprob == "plackett_luce":
      raise ValueError("rl.sampler='bernoulli' has no selection order; use rl.logprob='bernoulli' or 'per_token'.")
    if self.task_reward not in TASK_REWARDS:
      raise ValueError(f"rl.task_reward={self.task_reward!r}; expected one of {TASK_REWARDS}.")
    if self.entropy_coef < 0:
      raise ValueError(f"rl.entropy_coef={self.entropy_coef} must be >= 0.")
    if self.ppo_epochs < 1:
      raise ValueError(f"rl.ppo_epochs={self.ppo_epochs} must be >= 1.")
    if self.position_mode not in POSITION_MODES:
      raise ValueError(f"rl.position_mode={self.position_mode!r}; expected one of {POSITION_MODES}.")

  @property
  def adaptive(self) -> bool:
    """Whether the number of kept tokens varies (within a group and at inference)."""
    return self.sampler in ("bernoulli", "sized_topk")

  def counts(self, n: int) -> tuple[int, ...]:
    """sized_topk: the kept count of each level for n visual tokens."""
    return tuple(budget(n, r) for r in self.count_levels)

  @property
  def target(self) -> float:
    """The mean retention aimed at: `budget`, else the cap `ratio`."""
    return self.budget or self.ratio


def lagrange_update(weight: jnp.ndarray, kept: jnp.ndarray, target: float, lr: float,
                    two_sided: bool = False) -> jnp.ndarray:
  """Dual ascent on the constraint mean kept <= target: the compression weight grows while the
  rollouts keep more than the target and shrinks while they keep less, in steps of `lr` times the
  relative violation, within [0, MAX_COMP_WEIGHT]; `two_sided` (mean kept = target) lets it go down
  to -MAX_COMP_WEIGHT, a weight on keeping more (see `budget_advantage`)."""
  low = -MAX_COMP_WEIGHT if two_sided else 0.0
  return jnp.clip(weight + lr * (kept / target - 1.0), low, MAX_COMP_WEIGHT)


def budget_advantage(advantage_fn, r_task, r_comp, correct, kept, weight):
  """The advantage with a signed compression weight: for weight >= 0 `advantage_fn`'s own (sparsity
  credited to right answers only, for "split"); below 0 the task term plus |weight| times the
  group-normalised kept fraction [B, G], so that while the rollouts keep less than the budget,
  keeping more is credited (whatever the answer)."""
  adv = advantage_fn(r_task, r_comp, correct=correct, comp_weight=jnp.maximum(weight, 0.0))
  return adv + jnp.maximum(-weight, 0.0) * adv_lib.group_normalize(kept)


def task_reward(kind: str, option_logp: jnp.ndarray, answer: jnp.ndarray) -> jnp.ndarray:
  correct = rew.mc_correct(option_logp, answer)
  if kind == "correct":
    return correct
  margin = jnp.tanh(rew.answer_margin(option_logp, answer))
  return margin if kind == "margin" else correct + 0.5 * margin


def policy_outputs(policy, params, visual: jnp.ndarray, question: jnp.ndarray | None = None,
                   question_mask: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray | None]:
  """[B, T, P, d] (+ question embeddings [B, L, d] for a query-conditioned policy) -> (flat keep logits
  [B, T * P], count logits [B, L] of a policy with a count head, else None)."""
  if getattr(policy, "query_conditioned", False):
    out = policy.apply({"params": params}, visual, question, question_mask)
  else:
    out = policy.apply({"params": params}, visual)
  out, count = out if isinstance(out, tuple) else (out, None)
  return out.reshape(visual.shape[0], -1), count


def policy_logits(policy, params, visual: jnp.ndarray, question: jnp.ndarray | None = None,
                  question_mask: jnp.ndarray | None = None) -> jnp.ndarray:
  """Flat keep logits [B, T * P] (see `policy_outputs`)."""
  return policy_outputs(policy, params, visual, question, question_mask)[0]


QUESTION_KEYS = ("question", "question_mask")


def make_train_step(policy, llm_module, tx: optax.GradientTransformation, settings: RLSettings,
                    option_ids: jnp.ndarray, mesh=None, llm_params=None):
  """Returns the jitted `train_step(state, batch, key, llm_params) -> (state, metrics)`.

  batch: {"visual" [B, T, P, d], "prefix", "suffix", "suffix_len", "answer"}. With a mesh, the batch
  is sharded over its data axes, the (small) policy state is replicated, the LLM keeps its shardings
  and the state is donated.
  """
  s = settings
  advantage_fn = adv_lib.get_advantage(s.advantage)

  def train_step(state: TrainState, batch: dict, key: jax.Array, llm_params):
    visual = batch["visual"]
    b, t, p, d = visual.shape
    n = t * p
    k = budget(n, s.ratio)
    q = [batch.get(name) for name in QUESTION_KEYS]
    explore = lambda c: None if c is None else explore_count_logits(c, s.count_explore)  # noqa: E731
    old_logits, old_count = jax.lax.stop_gradient(policy_outputs(policy, state.params, visual, *q))
    old_count = explore(old_count)
    if s.sampler == "sized_topk":
      masks = sized_group_sample(key, old_logits, old_count, s.counts(n), s.group_size)
    else:
      masks = group_sample(key, old_logits, k, s.group_size, s.sampler)
    option_logp = rollout_option_logprobs(llm_module, llm_params, visual.reshape(b, n, d), masks, batch,
                                          option_ids, s.position_mode)
    answer = batch["answer"][:, None]
    correct = rew.mc_correct(option_logp, answer)
    r_task = task_reward(s.task_reward, option_logp, answer)
    r_comp = rew.COMP_REWARDS[s.comp_reward](masks.mask, n, s.target)
    lagrange = s.budget_control != "none"
    weight = state.comp_weight if lagrange else s.comp_weight
    if s.budget_control == "lagrange_two_sided":
      adv = budget_advantage(advantage_fn, r_task, r_comp, correct, rew.kept_fraction(masks.mask, n), weight)
    else:
      adv = advantage_fn(r_task, r_comp, correct=correct, comp_weight=weight)
    if s.logprob == "per_token":
      adv = adv_lib.token_advantages(adv, masks.mask)
    logp_old = mask_logprob(old_logits, masks, s.logprob, old_count)
    logp_ref = None
    if s.kl_coef:
      ref_logits, ref_count = policy_outputs(policy, state.ref_params, visual, *q)
      logp_ref = mask_logprob(ref_logits, masks, s.logprob, explore(ref_count))

    def loss_fn(params):
      logits, count = policy_outputs(policy, params, visual, *q)
      logp = mask_logprob(logits, masks, s.logprob, explore(count))
      loss, aux = policy_loss(logp, logp_old, adv, None, logp_ref, s.kl_coef, s.eps_low, s.eps_high)
      if s.entropy_coef:
        loss = loss - s.entropy_coef * token_entropy(logits)
      return loss, aux

    params, opt_state = state.params, state.opt_state
    for _ in range(s.ppo_epochs):
      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    kept = rew.kept_fraction(masks.mask, n).mean()
    metrics = {
        "loss": loss, "accuracy": correct.mean(), "reward_task": r_task.mean(),
        "kept_fraction": kept, "grad_norm": optax.global_norm(grads), "comp_weight": jnp.float32(weight),
        "group_reward_std": r_task.std(axis=1).mean(), "entropy": token_entropy(old_logits),
        "group_kept_std": rew.kept_fraction(masks.mask, n).std(axis=1).mean(), **aux}
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if lagrange:
      new = new.replace(comp_weight=lagrange_update(state.comp_weight, kept, s.target, s.budget_lr,
                                                    two_sided=s.budget_control == "lagrange_two_sided"))
    return new, metrics

  if mesh is None:
    return jax.jit(train_step, donate_argnums=(0,))
  rep = shd.replicated(mesh)
  llm_sh = jax.tree_util.tree_map(lambda x: x.sharding, llm_params)
  compiled = {}

  def jitted(batch):
    names = tuple(sorted(batch))
    if names not in compiled:
      batch_sh = {k: shd.batch_sharding(mesh, len(batch[k].shape)) for k in names}
      compiled[names] = jax.jit(train_step, donate_argnums=(0,), in_shardings=(rep, batch_sh, rep, llm_sh),
                                out_shardings=(rep, rep))
    return compiled[names]

  def sharded_step(state, batch, key, llm_params):
    """Every batch entry split over the data axes along its first dimension; one jitted function per
    set of batch keys (e.g. with or without per-sample "option_ids"), each compiled once."""
    return jitted(batch)(state, batch, key, llm_params)

  sharded_step._cache_size = lambda: sum(f._cache_size() for f in compiled.values())  # compilations, for tests
  # Ahead-of-time lowering from abstract arguments (`python -m score_jax.plan`), as `jax.jit(...).lower`.
  sharded_step.lower = lambda state, batch, key, llm_params: jitted(batch).lower(state, batch, key, llm_params)
  return sharded_step


def init_train_state(policy, tx, visual_shape, rng: jax.Array, with_reference: bool = False,
                     question_shape=None, comp_weight: float | None = None) -> TrainState:
  """Fresh state; `comp_weight` (rl.budget_control="lagrange*") starts the multiplier held in it."""
  args = [jnp.zeros(visual_shape, jnp.float32)]
  if getattr(policy, "query_conditioned", False):
    args += [jnp.zeros(question_shape, jnp.float32), jnp.ones(question_shape[:2], bool)]
  params = policy.init(rng, *args)["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    ref_params=params if with_reference else None,
                    comp_weight=None if comp_weight is None else jnp.float32(comp_weight))


def ranking_key(logits: jnp.ndarray, visual: jnp.ndarray, dedup: float) -> jnp.ndarray:
  """Flat keep logits [B, T * P] as they are, or with `dedup` > 0 (`score_eval.dedup`) re-keyed so that tokens
  at places still since frame 0 (`surprise.still_places` at that cosine) come after every other token,
  earliest frame first (`surprise.repeats_last`)."""
  if not dedup:
    return logits
  from score_jax.compress.surprise import repeats_last, still_places
  b, t, p = visual.shape[:3]
  log_score = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(b, t, p)
  return repeats_last(log_score, still_places(visual, dedup)).reshape(b, t * p)


@functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=("dedup",))
def policy_keep_indices(policy, params, visual: jnp.ndarray, k: int, question=None,
                        question_mask=None, dedup: float = 0.0) -> jnp.ndarray:
  """Deterministic inference: the k highest-scoring tokens (`ranking_key`), in temporal order. [B, k]."""
  from score_jax.compress.selection import topk_indices
  logits = policy_logits(policy, params, visual, question, question_mask)
  return topk_indices(ranking_key(logits, visual, dedup), k)


@functools.partial(jax.jit, static_argnums=(0, 3), static_argnames=("counts", "tail", "k_min", "dedup"))
def policy_adaptive_keep(policy, params, visual: jnp.ndarray, k_max: int, question=None,
                         question_mask=None, counts: tuple[int, ...] = (),
                         tail: float = 0.0, k_min: int = 1, dedup: float = 0.0) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Adaptive inference: each video keeps its own number of tokens, the highest-scoring ones, at most
  `k_max`: with `tail` > 0 the fewest that leave at most that much softmax probability outside, at least
  `k_min` (`selection.tail_count`, any scorer); else with `counts` (a sized_topk policy's level counts)
  round(sum_l P(level l) * counts[l]) from its count head; else round(sum sigmoid(logits)) (a keep/drop
  policy); the tokens are the highest under `ranking_key` (`dedup`). Returns
  (indices [B, k_max], valid [B, k_max]) in the padded layout of `selection.variable_topk`."""
  from score_jax.compress.selection import expected_count, level_count, tail_count, variable_topk
  logits, count_logits = policy_outputs(policy, params, visual, question, question_mask)
  if tail:
    count = tail_count(logits, tail, k_max, k_min)
  else:
    count = level_count(count_logits, counts, k_max) if counts else expected_count(logits, k_max)
  return variable_topk(ranking_key(logits, visual, dedup), count, k_max)
