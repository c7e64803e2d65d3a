"""One jitted CaCoVID update (one visit of a batch of samples) against the frozen video LLM.

    state, memory, metrics = train_step(state, batch, memory, key, llm_params, ratio=r, levels=lv)

1. question embeddings from the frozen LLM's embedding table (batch["question_ids"]/["question_mask"], by
   default the suffix and its length, or ready embeddings in batch["question"]); policy token and frame logits;
   the first visit's logits are stored in the memory and used for sampling and as PPO's old policy;
2. rollouts, each sample at its own rate (rung lv[b] of `settings.ladder`; k = round(r * P) tokens per frame,
   `ocss.ocss_shape`): content (density peaks, reward reported only, as in the authors' code), token (OCSS,
   first = top-k; a sub-space per frame, one rank block per rollout, or half of each: `subspace_draw`), frame
   (n_f frames, density peaks in them); T * k_max token slots, a sample at a lower rate has its extra slots
   marked invalid (masked in the prefill);
3. one batched prefill per rollout (`drop_repeats` > 0, ours: without the rollout's still repeats, the tokens
   inference with `cacovid_eval.dedup` ranks last) -> rewards: multiple-choice correctness (0/1, the authors'), or
   `settings.task_reward` as SCORE's (`train_step.task_reward`); rates move by correctness either way;
4. token and frame rollouts (and the rung of each) are appended to the replay memory; advantages
   (R - mean) / (std + 1e-4) over everything remembered of each kind (`advantage_groups="sample_rate"`: over
   the remembered rollouts of the same kind and rate); then `settings.logprob`:
   "per_token" (the authors'): per-token PPO (re-weighted) + per-frame PPO, optional KL to uniform;
   "ocss_exact": one clipped ratio per rollout, exp(log P_new(mask) - log P_old(mask)) with the exact
   probability of the keep mask under OCSS (token rollouts, at the rung each was drawn at) and of the frame
   set under frame mode (`ocss.ocss_set_logprob_by_level`, `ocss.frame_set_logprob`), same KL term. The
   deterministic first rollouts (top-k tokens, top frames) are scored by their probability under the sampler,
   as the per-token loss scores them; the ratio of a whole rollout is a product over its T frames, so it
   leaves the clip range much sooner than a per-token ratio does.
`ratio` (static) is the largest rate of the batch, so the step compiles once per rung of
`dynamic_ratio.ratio_ladder`; `levels` int [B] (dynamic, default: every sample at `ratio`) the rung of each
sample. The host loop (`methods/cacovid.py`) resets memory and levels per new batch and before each visit
moves every sample's rung by its own remembered rewards (`dynamic_ratio.update_levels`).
Reference: CaCoVID (arXiv 2602.01649) training code; mirrors `rl/train_step.py`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from score_jax.compress.surprise import check_still_cosine, still_places
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.rl import dynamic_ratio as dr
from score_jax.rl import ocss
from score_jax.rl import rewards as rew
from score_jax.rl.ppo import group_advantage, group_advantage_by, keep_drop_kl, keep_drop_ppo_loss, rollout_ppo_loss
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import MaskSample
from score_jax.rl.train_step import TASK_REWARDS, TrainState, task_reward


LOGPROBS = ("per_token", "ocss_exact")
ADVANTAGE_GROUPS = ("sample", "sample_rate")


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
  logprob: str = "per_token"
  task_reward: str = "correct"  # the authors' 0/1; "correct+margin" / "margin" as SCORE's (rl/train_step.py)
  advantage_groups: str = "sample"  # the authors': all of a sample's remembered rollouts; "sample_rate": per rate
  subspace_draw: str = "frame"  # the authors': a sub-space per frame; "video": one rank block per rollout; "mixed"
  drop_repeats: float = 0.0  # ours; > 0: the LLM answers each rollout without its still repeats (cosine threshold)

  def __post_init__(self):
    if not 0.0 < self.base_ratio <= 1.0:
      raise ValueError(f"base_ratio={self.base_ratio} must be in (0, 1].")
    if self.content_rollouts not in (0, 1):
      raise ValueError("content_rollouts must be 0 or 1.")
    if self.token_rollouts < 2 or self.frame_rollouts < 2:
      raise ValueError("token_rollouts and frame_rollouts must be >= 2 (group advantages).")
    if self.visits < 1 or self.ppo_epochs < 1:
      raise ValueError("visits and ppo_epochs must be >= 1.")
    if self.logprob not in LOGPROBS:
      raise ValueError(f"cacovid.logprob={self.logprob!r}; expected one of {LOGPROBS}.")
    if self.advantage_groups not in ADVANTAGE_GROUPS:
      raise ValueError(f"cacovid.advantage_groups={self.advantage_groups!r}; expected one of {ADVANTAGE_GROUPS}.")
    if self.subspace_draw not in ocss.SUBSPACE_DRAWS:
      raise ValueError(f"cacovid.subspace_draw={self.subspace_draw!r}; expected one of {ocss.SUBSPACE_DRAWS}.")
    check_still_cosine(self.drop_repeats, "cacovid.drop_repeats")
    if self.task_reward not in TASK_REWARDS:
      raise ValueError(f"cacovid.task_reward={self.task_reward!r}; expected one of {TASK_REWARDS}.")

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


def without_repeats(masks: MaskSample, visual: jnp.ndarray, threshold: float) -> MaskSample:
  """`masks` (leaves [B, G, k]) with the kept tokens that are still repeats of visual [B, T, P, d]
  (`surprise.still_places` at `threshold`: after frame 0, at a place unchanged since frame 0) marked invalid,
  so the LLM answers from frame 0 and what is new, as inference with `cacovid_eval.dedup` keeps them first."""
  b, t, p, _ = visual.shape
  repeat = jnp.broadcast_to(still_places(visual, threshold).reshape(b, 1, t * p), masks.indices.shape[:2] + (t * p,))
  return masks.replace(valid=masks.valid & ~jnp.take_along_axis(repeat, masks.indices, axis=-1))


def cacovid_loss(token_logits: jnp.ndarray, frame_logits: jnp.ndarray, memory: dr.ReplayMemory,
                 settings: CaCoVIDSettings, shapes: tuple[tuple[int, int], ...],
                 n_frames: int) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Token + frame PPO loss of the policy's new logits (token [B, T, P], frame [B, T]) over everything in
  the replay memory (old policy: the memory's first-visit logits), per `settings.logprob`; `shapes` are
  the (k, l) of every ladder rung (`ocss.rung_shapes`), `n_frames` the frames of a frame-mode rollout."""
  s = settings
  b, t, p = token_logits.shape
  if s.advantage_groups == "sample_rate":  # a rollout at a lower rate is compared only with its own rate's
    rungs = len(shapes)
    adv_tok = group_advantage_by(memory.token_rewards, memory.token_valid, memory.token_levels, rungs)
    adv_fr = group_advantage_by(memory.frame_rewards, memory.frame_valid, memory.frame_levels, rungs)
  else:
    adv_tok = group_advantage(memory.token_rewards, memory.token_valid)
    adv_fr = group_advantage(memory.frame_rewards, memory.frame_valid)
  old_tok = jax.lax.stop_gradient(memory.old_token_logits).reshape(b, t, p)
  old_fr = jax.lax.stop_gradient(memory.old_frame_logits)
  if s.logprob == "ocss_exact":
    lp_tok = lambda logits: ocss.ocss_set_logprob_by_level(logits, memory.token_masks, memory.token_levels,
                                                           shapes, s.max_group_prob, s.within_clip,
                                                           draw=s.subspace_draw)
    lp_fr = lambda logits: ocss.frame_set_logprob(logits, memory.frame_masks, n_frames, s.max_frame_prob)
    tok_loss, tok_aux = rollout_ppo_loss(lp_tok(token_logits), lp_tok(old_tok), adv_tok, memory.token_valid,
                                         eps_low=s.eps_low, eps_high=s.eps_high)
    fr_loss, fr_aux = rollout_ppo_loss(lp_fr(frame_logits), lp_fr(old_fr), adv_fr, memory.frame_valid,
                                       eps_low=s.eps_low, eps_high=s.eps_high)
    kl_tok = keep_drop_kl(token_logits.reshape(b, t * p), memory.token_masks, memory.token_valid, reweight=True)
    kl_fr = keep_drop_kl(frame_logits, memory.frame_masks, memory.frame_valid, reweight=False)
    tok_aux = dict(tok_aux, kl=jax.lax.stop_gradient(kl_tok))
    fr_aux = dict(fr_aux, kl=jax.lax.stop_gradient(kl_fr))
    if s.kl_coef:
      tok_loss, fr_loss = tok_loss + s.kl_coef * kl_tok, fr_loss + s.kl_coef * kl_fr
  else:
    tok_loss, tok_aux = keep_drop_ppo_loss(
        token_logits.reshape(b, t * p), old_tok.reshape(b, t * p), memory.token_masks, adv_tok, memory.token_valid,
        eps_low=s.eps_low, eps_high=s.eps_high, reweight=True, kl_coef=s.kl_coef)
    fr_loss, fr_aux = keep_drop_ppo_loss(
        frame_logits, old_fr, memory.frame_masks, adv_fr, memory.frame_valid,
        eps_low=s.eps_low, eps_high=s.eps_high, reweight=False, kl_coef=s.kl_coef)
  aux = {**{f"token_{k}": v for k, v in tok_aux.items()}, **{f"frame_{k}": v for k, v in fr_aux.items()}}
  return tok_loss + fr_loss, aux


def make_cacovid_train_step(policy, llm_module, tx: optax.GradientTransformation, settings: CaCoVIDSettings,
                            option_ids: jnp.ndarray):
  """Returns the jitted `train_step(state, batch, memory, key, llm_params, ratio, levels=None)
  -> (state, memory, metrics)`.

  `ratio` is static (a rung of `settings.ladder`: the largest rate of the batch); `levels` int [B] the rung
  of each sample (<= that of `ratio`; None: all at `ratio`); state and memory are donated.
  """
  s = settings

  def train_step(state: TrainState, batch: dict, memory: dr.ReplayMemory, key: jax.Array, llm_params,
                 ratio: float, levels: jnp.ndarray | None = None):
    visual = batch["visual"]
    b, t, p, d = visual.shape
    n = t * p
    top = dr.level_of(ratio, s.ladder)
    shapes = ocss.rung_shapes(s.ladder, p, s.lam)
    levels = jnp.full((b,), top, jnp.int32) if levels is None else jnp.minimum(levels.astype(jnp.int32), top)
    k = shapes[top][0]  # token slots per frame (the largest k of the batch)
    k_row = jnp.asarray([kk for kk, _ in shapes], jnp.int32)[levels]  # [B] each sample's k
    n_f = ocss.frames_per_rollout(t, s.frame_ratio)
    question, q_mask = question_inputs(llm_module, llm_params, batch)
    apply = lambda params: policy.apply({"params": params}, visual, question, q_mask)
    cur = jax.lax.stop_gradient(apply(state.params))
    memory = dr.set_old_logits(memory, cur.token.reshape(b, n), cur.frame)
    old_tok, old_fr = memory.old_token_logits.reshape(b, t, p), memory.old_frame_logits
    k_tok, k_fr = jax.random.split(key)
    token_s = ocss.ocss_group_sample_by_level(k_tok, old_tok, levels, shapes[:top + 1], s.token_rollouts,
                                              s.max_group_prob, s.within_clip,
                                              draw=s.subspace_draw)
    frame_s, frame_mask = ocss.frame_mode_sample(k_fr, old_fr, visual, k * t, n_f, s.frame_rollouts,
                                                 s.max_frame_prob, s.knn, k_valid=k_row * t)
    parts = ([ocss.content_sample(visual, k, s.knn, k_row)] if s.content_rollouts else []) + [token_s, frame_s]
    masks = _concat(parts)
    answered = without_repeats(masks, visual, s.drop_repeats) if s.drop_repeats else masks
    option_logp = rollout_option_logprobs(llm_module, llm_params, visual.reshape(b, n, d), answered, batch,
                                          option_ids, s.position_mode)
    correct = rew.mc_correct(option_logp, batch["answer"][:, None])  # [B, G]
    reward = task_reward(s.task_reward, option_logp, batch["answer"][:, None])
    c0, c1 = s.content_rollouts, s.content_rollouts + s.token_rollouts
    kinds = lambda x: (x[:, c0:c1], x[:, c1:])  # (token rollouts, frame rollouts) of [B, G]
    (r_tok, r_fr), (correct_tok, correct_fr) = kinds(reward), kinds(correct)
    memory = dr.append_token(memory, token_s.mask, r_tok, levels)
    memory = dr.append_frame(memory, frame_mask, r_fr, levels)

    def loss_fn(params):
      new = apply(params)
      return cacovid_loss(new.token, new.frame, memory, s, shapes, n_f)

    params, opt_state = state.params, state.opt_state
    for _ in range(s.ppo_epochs):
      (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    metrics = {
        "loss": loss, "reward_token": correct_tok.mean(), "reward_frame": correct_fr.mean(),
        "reward_content": correct[:, 0].mean() if c0 else jnp.float32(jnp.nan),
        "token_correct_by_sample": correct_tok.mean(-1),
        "memory_reward": dr.mean_token_reward(memory).mean(), "tokens_kept": jnp.mean(k_row * t),
        "tokens_answered": jnp.mean(jnp.sum(answered.valid, axis=-1)),
        "grad_norm": optax.global_norm(grads), **aux}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), memory, metrics

  return jax.jit(train_step, static_argnames=("ratio",), donate_argnums=(0, 2))


def init_cacovid_state(policy, tx, visual_shape: tuple[int, ...], question_len: int, rng: jax.Array) -> TrainState:
  """Policy parameters and optimiser state for visual tokens of `visual_shape` [B, T, P, d]."""
  b, _, _, d = visual_shape
  params = policy.init(rng, jnp.zeros(visual_shape, jnp.float32), jnp.zeros((b, question_len, d), jnp.float32),
                       jnp.ones((b, question_len), bool))["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
