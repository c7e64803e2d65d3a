"""CaCoVID: question-conditioned contribution scores, OCSS rollouts, PPO with a dynamic rate and replay.

One training step = one batch visited `config.cacovid.visits` times: the replay memory is reset for the
new batch, and before each visit every sample's rate moves on its ladder by the correctness of its own
remembered rollouts (halved when they are mostly right, doubled when mostly wrong; whatever
`cacovid.task_reward` the PPO advantages use), as the authors' trainer does per sample.
Memory and rates live only within a step, so a checkpoint between steps resumes exactly. Inference
keeps a per-frame budget of the best tokens plus uniformly spread ones, or with `cacovid_eval.dedup` the
best tokens over the video with tokens of places still since frame 0 last (`compress/cacovid_inference.py`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress import cacovid_inference
from score_jax.compress.cacovid_policy import CaCoVIDPolicy
from score_jax.compress.surprise import check_still_cosine
from score_jax.rl import cacovid_step as cs
from score_jax.rl import dynamic_ratio as dr


def make_policy(config) -> CaCoVIDPolicy:
  p = config.policy
  # runs recorded before these options existed get the policy's defaults
  optional = ("num_kv_heads", "mlp_ratio", "rope_theta", "rms_norm_eps", "use_residual", "norm_inputs",
              "question_attention")
  return CaCoVIDPolicy(hidden=p.hidden or None, num_layers=p.num_layers, num_heads=p.num_heads,
                       intermediate_size=p.get("intermediate_size") or None,  # 0 / None: mlp_ratio * width
                       **{name: p[name] for name in optional if name in p})


def warm_start(params: dict, policy: CaCoVIDPolicy, llm) -> dict:
  """`params` with the policy's first layer replaced by the frozen LLM's first decoder layer (and the type
  embedding zeroed, so that the layer starts as the LLM's own); the policy must have the LLM's shape
  (`hidden=None`, config value 0; its heads, key/value heads, MLP width, RoPE base and RMSNorm epsilon), else
  ValueError naming the config values to set."""
  text = llm.cfg.text
  want = dict(hidden=None, num_heads=text.num_attention_heads, num_kv_heads=text.num_key_value_heads,
              intermediate_size=text.intermediate_size, rope_theta=text.rope_theta, rms_norm_eps=text.rms_norm_eps)
  layer = policy.layer_config(policy.hidden or text.hidden_size)  # the policy's own rule for its layer's shape
  have = dict(hidden=policy.hidden, num_heads=layer.num_attention_heads, num_kv_heads=layer.num_key_value_heads,
              intermediate_size=layer.intermediate_size, rope_theta=layer.rope_theta, rms_norm_eps=layer.rms_norm_eps)
  wrong = {name: (have[name], value) for name, value in want.items() if have[name] != value}
  if wrong:
    raise ValueError("policy.init_from_llm needs the policy in the LLM's shape; set "
                     + ", ".join(f"config.policy.{k}={0 if k == 'hidden' else v!r} (is {h!r})"
                                 for k, (h, v) in wrong.items()))
  first = jax.tree_util.tree_map(lambda x: jnp.asarray(x[0], jnp.float32),
                                 llm.params["language_model"]["layers"])
  if jax.tree_util.tree_structure(first) != jax.tree_util.tree_structure(params["layer_0"]):
    raise ValueError("the LLM's decoder layer and the policy's first layer have different parameter trees.")
  return dict(params, layer_0=first, type_embed=jnp.zeros_like(params["type_embed"]))


def uses_question(config) -> bool:
  del config
  return True


def settings(config) -> cs.CaCoVIDSettings:
  """The RL settings; `cacovid_eval` is checked here too, so that a bad value stops a run before training."""
  inference(config)
  return cs.CaCoVIDSettings(**config.cacovid.to_dict())


# The inference section and the settings of it that `inference` reads (`eval.takes_inference`).
INFERENCE = ("cacovid_eval", ("imp", "max_frame_share", "dedup"))


def inference(config) -> tuple[float, float | None, float]:
  """(cacovid_eval.imp, cacovid_eval.max_frame_share or None for the authors' 1.5 * rate, cacovid_eval.dedup),
  checked."""
  ev = config.get("cacovid_eval", {})
  imp, share = float(ev.get("imp", 0.5)), float(ev.get("max_frame_share", 0.0))
  dedup = check_still_cosine(float(ev.get("dedup", 0.0)), "cacovid_eval.dedup")
  if not 0.0 <= imp <= 1.0:
    raise ValueError(f"cacovid_eval.imp={imp} must be in [0, 1].")
  if not 0.0 <= share <= 1.0:
    raise ValueError(f"cacovid_eval.max_frame_share={share} must be in [0, 1] (0: the authors' 1.5 * rate).")
  return imp, share or None, dedup


def init_state(config, policy, tx, llm, key, mesh=None):
  del mesh  # the CaCoVID step uses the default layout
  d = llm.cfg.text.hidden_size
  state = cs.init_cacovid_state(policy, tx, (1, llm.num_frames, llm.cfg.tokens_per_frame, d), llm.suffix_len, key)
  if config.policy.get("init_from_llm", False):
    params = warm_start(state.params, policy, llm)
    state = state.replace(params=params, opt_state=tx.init(params))
  return state


def make_train_step(config, policy, llm, tx, mesh):
  """step(state, batch, key, llm_params) -> (state, metrics of the last visit, plus the final rates)."""
  del mesh  # the CaCoVID step runs on the default device layout (one sample per device in the paper)
  s = settings(config)
  visit = cs.make_cacovid_train_step(policy, llm.module, tx, s, llm.option_ids)

  def step(state, batch, key, llm_params):
    b, t, p, _ = batch["visual"].shape
    memory = cs.init_cacovid_memory(s, b, t, p)
    levels = np.full((b,), dr.level_of(s.base_ratio, s.ladder), np.int32)  # one rung per sample
    metrics, correct = {}, np.zeros((b,))
    for v in range(s.visits):
      if v:  # the mean correctness of each sample's remembered rollouts (equal numbers per visit)
        levels = dr.update_levels(levels, correct / v, len(s.ladder))
      state, memory, metrics = visit(state, batch, memory, jax.random.fold_in(key, v), llm_params,
                                     ratio=s.ladder[int(levels.max())], levels=jnp.asarray(levels))
      correct = correct + np.asarray(metrics.pop("token_correct_by_sample"))
    rates = np.asarray(s.ladder)[levels]
    metrics = dict(metrics, sample_ratio=float(rates.mean()), sample_ratio_min=float(rates.min()),
                   sample_ratio_max=float(rates.max()), accuracy=metrics["reward_token"])
    return state, metrics
  return step


def keep_fn(config, policy, params):
  imp, share, dedup = inference(config)

  @functools.partial(jax.jit, static_argnums=(3,))
  def keep(params, visual, question, k_ratio, question_mask):
    return cacovid_inference.policy_keep_indices(policy, params, visual, question, question_mask, k_ratio, imp,
                                                 share, dedup)

  def select(features, k):
    b, t, p, _ = features["visual"].shape
    ratio = k / (t * p)
    return keep(params, features["visual"], features["question"], ratio, features["question_mask"])
  return select
