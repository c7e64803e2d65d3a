"""Rollouts per second of the SCORE train step, and the share of the step spent in the frozen LLM.

    python benchmarks/rl_step.py                                        # experiments/curriculum.py as configured
    python benchmarks/rl_step.py --config=experiments/curriculum.py --config.rl.group_size=4 --repeats=10
    python benchmarks/rl_step.py --config=experiments/smoke.py --repeats=1   # smoke size: batch 2, group 2

The step is the one `python -m score_jax.train` runs (`config.method` "score": `make_train_step` on the
config's mesh, the frozen LLM of `config.model`), on one batch of the last curriculum stage whose visual tokens
are computed beforehand, as the feature-cache path of train.py hands them to the step (the vision side is not
timed). Three jitted functions are timed on that batch, each the median of `--repeats` calls after a warm-up
(compilation) call:
- the whole train step (rollouts/s = batch x group size / step s);
- the frozen LLM alone: the prefill of all batch x group masked rollouts to option log-probs, the same
  `rollout_option_logprobs` call the step makes, on masks sampled from the policy;
- the policy alone: its forward pass, the group sampling and `rl.ppo_epochs` clipped policy-gradient updates
  (forward, backward, optimizer) with stand-in advantages.
The remainder, step s - LLM s - policy s, is the rest of the step (rewards, advantages, metrics) and what the
one jitted step saves or adds against the separate calls.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
import grain
import jax
import optax
from ml_collections import config_flags

from score_jax import cache, distributed
from score_jax import train as train_lib
from score_jax.compress.selection import budget
from score_jax.config_checks import parse_curriculum
from score_jax.frozen_llm import load_frozen_llm
from score_jax.methods import score
from score_jax.models import sharding as shd
from score_jax.rl import train_step as ts
from score_jax.rl.losses import policy_loss, token_entropy
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import group_sample, mask_logprob
from score_jax.timing import median_seconds

DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments",
                              "curriculum.py")
_CONFIG = config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "experiment config (get_config()), as train.py")
_REPEATS = flags.DEFINE_integer("repeats", 5, "timed calls per function after one warm-up (median reported)")

BATCH_KEYS = ("prefix", "suffix", "suffix_len", "answer", "option_ids", "num_options")


def one_batch(config, llm, mesh, with_question: bool) -> dict:
  """The first batch of the last curriculum stage as the step takes it, visual tokens already encoded
  (read synchronously: no reader threads left running while the step is timed)."""
  kind = parse_curriculum(config.curriculum)[-1][0]
  src = train_lib.train_source(config, kind, llm)
  preprocess = cache.preprocess_settings(config) if isinstance(src, train_lib.DECODED_SOURCES) else None
  raw = grain.MapDataset.source(src).batch(config.batch_size)[0]
  b = train_lib.model_inputs(raw, llm, preprocess)
  video = "visual" if "visual" in b else "frames"
  batch = distributed.global_batch(mesh, {k: b[k] for k in (video, *BATCH_KEYS) if k in b})
  if video == "frames":
    batch["visual"] = llm.encode(llm.params, batch.pop("frames"))
  if with_question:
    batch.update(llm.question_features(batch["suffix"], batch["suffix_len"]))
  return jax.block_until_ready(batch)


def llm_part(llm, s: ts.RLSettings):
  """Jitted (llm params, batch, masks) -> option log-probs [B, G, n]: the step's frozen-LLM prefills (masks
  of the policy's group sampling)."""
  def run(llm_params, batch, masks):
    b, t, p, d = batch["visual"].shape
    return rollout_option_logprobs(llm.module, llm_params, batch["visual"].reshape(b, t * p, d), masks, batch,
                                   llm.option_ids, s.position_mode)
  return jax.jit(run)


def policy_part(policy, tx: optax.GradientTransformation, s: ts.RLSettings):
  """Jitted (state, batch, key, advantages) -> (params, opt_state, masks): the step's policy work (forward,
  group sampling, `ppo_epochs` clipped policy-gradient updates) with given advantages instead of the LLM's."""
  def run(state: ts.TrainState, batch, key, adv):
    visual = batch["visual"]
    q = [batch.get(n) for n in ts.QUESTION_KEYS]
    old_logits = jax.lax.stop_gradient(ts.policy_logits(policy, state.params, visual, *q))
    masks = group_sample(key, old_logits, budget(visual.shape[1] * visual.shape[2], s.ratio), s.group_size,
                         s.sampler)
    logp_old = mask_logprob(old_logits, masks, s.logprob)
    logp_ref = (mask_logprob(ts.policy_logits(policy, state.ref_params, visual, *q), masks, s.logprob)
                if s.kl_coef else None)

    def loss_fn(params):
      logits = ts.policy_logits(policy, params, visual, *q)
      loss, _ = policy_loss(mask_logprob(logits, masks, s.logprob), logp_old, adv.reshape(logp_old.shape), None,
                            logp_ref, s.kl_coef, s.eps_low, s.eps_high)
      return loss - s.entropy_coef * token_entropy(logits) if s.entropy_coef else loss

    params, opt_state = state.params, state.opt_state
    for _ in range(s.ppo_epochs):
      grads = jax.grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
    return params, opt_state, masks
  return jax.jit(run)


def prompt_tokens(batch: dict) -> int:
  """Text tokens around the video: prefix + suffix (padded length)."""
  return int(batch["prefix"].shape[1] + batch["suffix"].shape[1])


def main(_):
  config = _CONFIG.value
  if config.get("method", "score") != "score":
    sys.exit(f"config.method={config.method!r}: this benchmark times the SCORE step ('score').")
  s = score.settings(config)
  total = sum(steps for _, steps in parse_curriculum(config.curriculum))
  mesh = shd.make_mesh(tuple(config.model.mesh))
  llm = load_frozen_llm(config.model, mesh)
  policy, tx = score.make_policy(config), train_lib.make_optimizer(config, total)
  state = score.init_state(config, policy, tx, llm, jax.random.key(config.seed), mesh)
  step_fn = score.make_train_step(config, policy, llm, tx, mesh)
  batch = one_batch(config, llm, mesh, score.uses_question(config))
  b, t, p, _ = batch["visual"].shape
  rollouts, repeats = b * s.group_size, _REPEATS.value
  keys = iter(jax.random.split(jax.random.key(config.seed + 1), 2 * (repeats + 1)))  # one per step / policy call

  def step():
    nonlocal state
    state, metrics = step_fn(state, batch, next(keys), llm.params)  # the state is donated: carry it on
    jax.block_until_ready(metrics)
  step_s, _ = median_seconds(step, repeats=repeats)
  compilations = step_fn._cache_size()

  policy_fn, llm_fn = policy_part(policy, tx, s), llm_part(llm, s)
  adv = jax.random.normal(jax.random.key(0), (b, s.group_size, t * p) if s.logprob == "per_token"
                          else (b, s.group_size))
  policy_s, (_, _, masks) = median_seconds(lambda: policy_fn(state, batch, next(keys), adv), repeats=repeats)
  llm_s, _ = median_seconds(llm_fn, llm.params, batch, masks, repeats=repeats)

  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}, mesh {dict(mesh.shape)}; config "
        f"{config_flags.get_config_filename(flags.FLAGS['config'])}; frozen LLM: "
        f"{config.model.kind} ({llm.cfg.text.num_hidden_layers} layers, d={llm.cfg.text.hidden_size}, "
        f"{config.model.dtype}); {t}x{p}={t * p} visual tokens per video, {budget(t * p, s.ratio)} kept "
        f"(rl.ratio={s.ratio}, sampler {s.sampler}), {prompt_tokens(batch)} prompt tokens; "
        f"rl.ppo_epochs={s.ppo_epochs}; train-step compilations: {compilations}; median of {repeats} after a warm-up")
  print()
  print("| batch | group | rollouts/step | step s | rollouts/s | LLM s | LLM share | policy s | policy share "
        "| remainder s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  print(f"| {b} | {s.group_size} | {rollouts} | {step_s:.4g} | {rollouts / step_s:.1f} | {llm_s:.4g} "
        f"| {llm_s / step_s:.0%} | {policy_s:.4g} | {policy_s / step_s:.0%} | {step_s - llm_s - policy_s:.4g} |")


if __name__ == "__main__":
  app.run(main)
