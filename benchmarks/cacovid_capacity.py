"""Can the CaCoVID policy find the question's target at all? Its architecture trained *with labels*.

    python benchmarks/cacovid_capacity.py --config=experiments/cacovid.py [--steps=1500] \
        [--checkpoint=workdirs/cacovid]   # the same share for RL-trained CaCoVID policies, for comparison

A diagnostic, never a way to train a shipped policy: a fresh `CaCoVIDPolicy` of the config's shape is
trained by supervised cross-entropy to put each frame's softmax mass on the generator's target tokens
(the oracle mask, which no RL method reads) on `--train` training videos, and the share of held-out
frames whose top-scored token lies on the target is printed per question type every `--every` steps.
If this reaches ~1 on a type while the RL-trained policy stays low, the RL signal, not the policy's
inputs or size, is what limits that type (BUILD_NOTES.md, issue 13).
"""
from __future__ import annotations

import time

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import optax

from score_jax import eval as eval_lib
from score_jax.embedded.world_text import WORLD
from score_jax.frozen_llm import load_frozen_llm
from score_jax.methods import get_method
from score_jax.train import ordered_batches
from score_jax.world.sources import WorldSource

_CONFIG = config_flags.DEFINE_config_file("config", None, "a CaCoVID experiment config", lock_config=False)
_STEPS = flags.DEFINE_integer("steps", 1500, "supervised steps")
_BATCH = flags.DEFINE_integer("batch", 16, "videos per step")
_TRAIN = flags.DEFINE_integer("train", 2048, "training videos")
_HELDOUT = flags.DEFINE_integer("heldout", 512, "held-out videos")
_EVERY = flags.DEFINE_integer("every", 300, "report every this many steps")
_CHECKPOINT = flags.DEFINE_multi_string("checkpoint", [], "CaCoVID training workdirs to report the same share for")


def gather(config, llm, split: str, n: int) -> dict:
  """Visual tokens, question embeddings and mask, oracle target mask [n, T, P] and question types."""
  src = WorldSource(WORLD, kind="video", split=split, size=n)
  out = {k: [] for k in ("visual", "question", "question_mask", "target", "type")}
  for raw, b in ordered_batches(config, llm, src):
    visual = np.asarray(llm.encode(llm.params, b["frames"]))
    q = llm.question_features(b["suffix"], b["suffix_len"])
    out["visual"].append(visual)
    out["question"].append(np.asarray(q["question"]))
    out["question_mask"].append(np.asarray(q["question_mask"]))
    out["target"].append(np.asarray(b["oracle_scores"]).reshape(visual.shape[:3]) > 0)
    out["type"].extend(str(t) for t in raw["question_type"])
  return {k: np.concatenate(v) if k != "type" else np.array(v) for k, v in out.items()}


def top1_on_target(token_logits: np.ndarray, target: np.ndarray, types: np.ndarray) -> dict[str, float]:
  """Per question type: the mean over videos of the share of target-holding frames whose top token is a target."""
  top = np.argmax(token_logits, axis=-1)  # [n, T]
  on = np.take_along_axis(target, top[..., None], axis=-1)[..., 0]
  has = target.any(-1)
  share = np.sum(on & has, axis=-1) / np.maximum(has.sum(-1), 1)
  return {t: float(share[types == t].mean()) for t in sorted(set(types))}


def report(name: str, share: dict[str, float]) -> None:
  print(f"{name}: held-out frames whose top token is on the target: "
        + ", ".join(f"{t} {v:.2f}" for t, v in share.items()), flush=True)


def main(argv):
  del argv
  config = _CONFIG.value
  if config.method != "cacovid":
    raise SystemExit(f"error: --config is a {config.method!r} experiment; this probes the CaCoVID policy.")
  llm = load_frozen_llm(config.model, None)
  t0 = time.time()
  train, held = gather(config, llm, "train", _TRAIN.value), gather(config, llm, "heldout", _HELDOUT.value)
  keys = ("visual", "question", "question_mask")
  for path in _CHECKPOINT.value:
    run_config, _, trained, trained_params = eval_lib.load_policy_params(path, llm)
    if run_config.method != "cacovid":
      raise SystemExit(f"error: {path} is a {run_config.method!r} run, not CaCoVID.")
    logits = trained.apply({"params": trained_params}, *(jnp.asarray(held[k]) for k in keys)).token
    report(f"RL-trained {path}", top1_on_target(np.asarray(logits), held["target"], held["type"]))
  policy = get_method(config).make_policy(config)
  params = policy.init(jax.random.key(config.seed), *(jnp.asarray(train[k][:2]) for k in keys))["params"]
  tx = optax.adam(config.optim.learning_rate)
  opt = tx.init(params)

  def loss_fn(params, visual, question, mask, target):
    logits = policy.apply({"params": params}, visual, question, mask).token
    tgt = target.astype(jnp.float32)
    has = tgt.sum(-1) > 0
    ce = -jnp.sum(jax.nn.log_softmax(logits, -1) * tgt, -1) / jnp.maximum(tgt.sum(-1), 1)
    return jnp.sum(ce * has) / jnp.maximum(has.sum(), 1)

  @jax.jit
  def step(params, opt, *batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  logits_of = jax.jit(lambda params, *x: policy.apply({"params": params}, *x).token)
  rng = np.random.default_rng(config.seed)
  print(f"{len(train['type'])} training / {len(held['type'])} held-out videos encoded in {time.time() - t0:.0f} s")
  for s in range(1, _STEPS.value + 1):
    i = rng.choice(len(train["type"]), _BATCH.value, replace=False)
    params, opt, loss = step(params, opt, *(jnp.asarray(train[k][i]) for k in keys + ("target",)))
    if s % _EVERY.value == 0 or s == _STEPS.value:
      share = top1_on_target(np.asarray(logits_of(params, *(jnp.asarray(held[k]) for k in keys))),
                             held["target"], held["type"])
      report(f"step {s}: loss {float(loss):.3f}", share)


if __name__ == "__main__":
  app.run(main)
