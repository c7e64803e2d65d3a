"""One jitted CaCoVID update (one visit of a batch of samples) against the frozen video LLM.

    state, memory, metrics = train_step(state, batch, memory, key, llm_params, ratio=r)

1. question embeddings from the frozen LLM's embedding table (batch["question_ids"]/["question_mask"], by
   default the suffix and its length, or ready embeddings in batch["question"]); policy token and frame logits;
   the first visit's logits are stored in the memory and used for sampling and as PPO's old policy;
2. rollouts with k = round(r * P) tokens per frame (T * k tokens each): content (density peaks, reward
   reported only, as in the authors' code), token (OCSS, first = top-k), frame (n_f frames, density peaks in them);
3. one batched prefill per rollout -> multiple-choice correctness (0/1) rewards;
4. token and frame rollouts are appended to the replay memory; advantages (R - mean) / (std + 1e-4) over
   everything remembered of each kind; per-token PPO (re-weighted) + per-frame PPO, optional KL to uniform.
The rate r is static (k must be): it compiles once per rung of `dynamic_ratio.ratio_ladder`. The host loop
resets the memory per new batch (`init_cacovid_memory`), and before each visit moves r with
`dynamic_ratio.update_ratio(r, float(mean_token_reward(memory).mean()), ladder)`. The rate is shared by the
samples of a batch (CaCoVID trains with one sample per device).
Reference: CaCoVID (arXiv 2602.01649) training code; mirrors `rl/train_step.py`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.rl import dynamic_ratio as dr
from score_jax.rl import ocss
from score_jax.rl import rewards as rew
from score_jax.rl.ppo import group_advantage, keep_drop_ppo_loss
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import MaskSample
from score_jax.rl.train_step import TrainState


@dataclasses.dataclass(frozen=True)
class CaCoVIDSettings:
  base_ratio: float = 0.02
  lam: float = 2.0
  max_group_prob: float = 2.0
  within_clip: float | None = 2.0
  content_rollouts: int = 1
  token_rollouts: int = 23
  frame_rollouts: int = 8
  frame_ratio: float = 0.125
  max_frame_prob: float | None = None
  knn: int = 4
  visits: int = 5
  eps_low: float = 0.2
  eps_high: float = 0.28
  kl_coef: float = 0.0
  ppo_epochs: int = 1
  position_mode: str = "original"

  def __post_init__(self):
    if not 0.0 < self.base_ratio <= 1.0:
      raise ValueError(f"base_ratio={self.base_ratio} must be in (0, 1].")
    if self.content_rollouts not in (0, 1):
      raise ValueError("content_rollouts must be 0 or 1.")
    if self.token_rollouts < 2 or self.frame_rollouts < 2:
      raise ValueError("token_rollouts and frame_rollouts must be >= 2 (group advantages).")
    if self.visits < 1 or self.ppo_epochs < 1:
      raise ValueError("visits and ppo_epochs must be >= 1.")

  @property
  def ladder(self) -> tuple[float, ...]:
    return dr.ratio_ladder(self.base_ratio)


def init_cacovid_memory(settings: CaCoVIDSettings, batch: int, t: int, p: int) -> dr.ReplayMemory:
  """Empty replay memory for a new batch: room for every rollout of `settings.visits` visits."""
  s = settings
  return dr.init_memory(s.visits * s.token_rollouts, s.visits * s.frame_rollouts, t * p, t, (batch,))


def question_inputs(llm_module, llm_params, batch: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(question embeddings [B, L, d], mask [B, L]) for the policy."""
  if "question" in batch:
    q = batch["question"]
    return q, batch.get("question_mask", jnp.ones(q.shape[:2], bool))
  ids = batch.get("question_ids", batch["suffix"])
  if "question_mask" in batch:
    mask = batch["question_mask"]
  elif "question_ids" in batch:
    mask = jnp.ones(ids.shape, bool)
  else:
    mask = jnp.arange(ids.shape[1])[None, :] < batch["suffix_len"][:, None]
  emb = llm_module.apply({"params": llm_params}, ids, method=LlavaOnevision.embed)
  return jax.lax.stop_gradient(emb.astype(jnp.float32)), mask.astype(bool)


def _concat(samples: list[MaskSample]) -> MaskSample:
  return jax.tree_util.tree_map(lambda *x: jnp.concatenate(x, axis=1), *samples)


def make_cacovid_train_step(policy, llm_module, tx: optax.GradientTransformation, settings: CaCoVIDSettings,
                            option_ids: jnp.ndarray):
  """Returns the jitted `train_step(state, batch, memory, key, llm_params, ratio) -> (state, memory, metrics)`.

  `ratio` is static (a rung of `settings.ladder`); state and memory are donated.
  """
  s = settings

  def train_step(state: TrainState, batch: dict, memory: dr.ReplayMemory, key: jax.Array, llm_params,
                 ratio: float):
    visual = batch["visual"]
    b, t, p, d = visual.shape
    n = t * p
    k = ocss.tokens_per_frame(ratio, p)
    l = ocss.num_subspaces(ratio, s.lam)
    n_f = ocss.frames_per_rollout(t, s.frame_ratio)
    question, q_mask = question_inputs(llm_module, llm_params, batch)
    apply = lambda params: policy.apply({"params": params}, visual, question, q_mask)
    cur = jax.lax.stop_gradient(apply(state.params))
    memory = dr.set_old_logits(memory, cur.token.reshape(b, n), cur.frame)
    old_tok, old_fr = memory.old_token_logits.reshape(b, t, p), memory.old_frame_logits
    k_tok, k_fr = jax.random.split(key)
    token_s = ocss.ocss_group_sample(k_tok, old_tok, k, s.token_rollouts, l, s.max_group_prob, s.within_clip)
    frame_s, frame_mask = ocss.frame_mode_sample(k_fr, old_fr, visual, k * t, n_f, s.frame_rollouts,
                                                 s.max_frame_prob, s.knn)
    parts = ([ocss.content_sample(visual, k, s.knn)] if s.content_rollouts else []) + [token_s, frame_s]
    masks = _concat(parts)
    option_logp = rollout_option_logprobs(llm_module, llm_params, visual.reshape(b, n, d), masks, batch,
                                          option_ids, s.position_mode)
    correct = rew.mc_correct(option_logp, batch["answer"][:, None])  # [B, G]
    c0 = s.content_rollouts
    r_tok, r_fr = correct[:, c0:c0 + s.token_rollouts], correct[:, c0 + s.token_rollouts:]
    memory = dr.append_token(memory, token_s.mask, r_tok)
    memory = dr.append_frame(memory, frame_mask, r_fr)
    adv_tok = group_advantage(memory.token_rewards, memory.token_valid)
    adv_fr = group_advantage(memory.frame_rewards, memory.frame_valid)

    def loss_fn(params):
      new = apply(params)
      tok_loss, tok_aux = keep_drop_ppo_loss(
          new.token.reshape(b, n), memory.old_token_logits, memory.token_masks, adv_tok, memory.token_valid,
          eps_low=s.eps_low, eps_high=s.eps_high, reweight=True, kl_coef=s.kl_coef)
      fr_loss, fr_aux = keep_drop_ppo_loss(
          new.frame, memory.old_frame_logits, memory.frame_masks, adv_fr, memory.frame_valid,
          eps_low=s.eps_low, eps_high=s.eps_high, reweight=False, kl_coef=s.kl_coef)
      aux = {**{f"token_{k_}": v for k_, v in tok_aux.items()}, **{f"frame_{k_}": v for k_, v in fr_aux.items()}}
      return tok_loss + fr_loss, aux

    params, opt_state = state.params, state.opt_state
    for _ in range(s.ppo_epochs):
      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    metrics = {
        "loss": loss, "reward_token": r_tok.mean(), "reward_frame": r_fr.mean(),
        "reward_content": correct[:, 0].mean() if c0 else jnp.float32(jnp.nan),
        "memory_reward": dr.mean_token_reward(memory).mean(), "tokens_kept": jnp.int32(k * t),
        "grad_norm": optax.global_norm(grads), **aux}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), memory, metrics

  return jax.jit(train_step, static_argnames=("ratio",), donate_argnums=(0, 2))


def init_cacovid_state(policy, tx, visual_shape: tuple[int, ...], question_len: int, rng: jax.Array) -> TrainState:
  """Policy parameters and optimiser state for visual tokens of `visual_shape` [B, T, P, d]."""
  b, _, _, d = visual_shape
  params = policy.init(rng, jnp.zeros(visual_shape, jnp.float32), jnp.zeros((b, question_len, d), jnp.float32),
                       jnp.ones((b, question_len), bool))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
