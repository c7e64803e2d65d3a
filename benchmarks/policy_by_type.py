"""Accuracy of a trained policy on the embedded world's held-out videos, per question type.

    python benchmarks/policy_by_type.py --checkpoint=workdirs/curriculum --ratios=0.25,0.1

Shows where a policy loses accuracy: per question type, the accuracy at each ratio and how often
at least one kept token covers the question's target object (from the generator's object masks).
Uses the run config of `experiments/curriculum.py` for the frozen model and the same held-out videos
as `score_jax.train` (the first `--samples`).
"""
from __future__ import annotations

import os
import sys

from absl import app, flags
import jax
import numpy as np

_CHECKPOINT = flags.DEFINE_string("checkpoint", "workdirs/curriculum", "training workdir of the policy")
_RATIOS = flags.DEFINE_list("ratios", ["0.25", "0.1"], "retention ratios")
_SAMPLES = flags.DEFINE_integer("samples", 256, "held-out videos")


def main(argv):
  del argv
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
  import curriculum  # noqa: E402
  from score_jax import eval as eval_lib, evaluation, train as train_lib
  from score_jax.compress.selection import budget
  from score_jax.world.oracle import relevant_token_mask
  from score_jax.data.pipeline import make_iterator
  from score_jax.world.sources import WorldSource
  from score_jax.frozen_llm import load_frozen_llm
  from score_jax.models import sharding as shd

  config = curriculum.get_config()
  llm = load_frozen_llm(config.model, shd.make_mesh((1, 1, 1), devices=jax.devices()[:1]))
  from score_jax.methods.keep_policy import as_keep_policy
  policy = as_keep_policy(eval_lib.load_policy(_CHECKPOINT.value, llm)[1])
  answer = evaluation.answer_fn(llm)

  src = WorldSource(train_lib.WORLD, kind="video", split="heldout", size=_SAMPLES.value)
  hits: dict = {}
  covered: dict = {}
  for raw in make_iterator(src, 32, seed=0, shuffle=False, num_epochs=1, num_threads=1):
    b = train_lib.model_inputs(raw, llm)
    visual = llm.encode(llm.params, b["frames"])
    bsz, t, p, d = visual.shape
    features = {"visual": visual, **llm.question_features(b["suffix"], b["suffix_len"])}
    text = evaluation.text_inputs(b)
    target = relevant_token_mask(raw["relevant"]).reshape(bsz, t * p)
    for ratio in map(float, _RATIOS.value):
      keep = policy.select(features, budget(t * p, ratio))
      pred = np.asarray(answer(llm.params, visual.reshape(bsz, t * p, d), keep, text,
                               position_mode=policy.position_mode))
      on_target = np.take_along_axis(target, np.asarray(keep), axis=1).any(axis=1)
      for qtype, ok, cov in zip(raw["question_type"], pred == b["answer"], on_target):
        hits.setdefault(str(qtype), {}).setdefault(ratio, []).append(bool(ok))
        covered.setdefault(str(qtype), {}).setdefault(ratio, []).append(bool(cov))
  ratios = list(map(float, _RATIOS.value))
  print("| question type | samples | " + " | ".join(f"{r:.0%} kept" for r in ratios) + " | "
        + " | ".join(f"target kept at {r:.0%}" for r in ratios) + " |")
  print("|---|---|" + "---|" * 2 * len(ratios))
  for qtype in sorted(hits):
    row = [f"{np.mean(hits[qtype][r]):.3f}" for r in ratios] + [f"{np.mean(covered[qtype][r]):.3f}" for r in ratios]
    print(f"| {qtype} | {len(hits[qtype][ratios[0]])} | " + " | ".join(row) + " |")


if __name__ == "__main__":
  app.run(main)
