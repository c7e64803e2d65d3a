"""Accuracy of trained policies on the embedded world's held-out videos, per question type.

    python benchmarks/policy_by_type.py --checkpoint=score=workdirs/curriculum \
        --checkpoint=cacovid=workdirs/cacovid --ratios=0.25,0.1 [--out=by_type.md]

Shows where a policy loses accuracy and what question conditioning buys: per question type (and whether
the question names its target object: the static types, `world.generator.STATIC_QUESTION_TYPES`), the
frozen model's accuracy with all tokens, each policy's accuracy at each ratio, and how often at least one
kept token covers the target object (from the generator's object masks). Works for any method's workdir
(SCORE, question-blind; CaCoVID, which reads the question's embeddings). The frozen model and held-out
videos (the first `--samples`, as `score_jax.train`) come from the first checkpoint's run config.
"""
from __future__ import annotations

from absl import app, flags
import jax
import numpy as np

_CHECKPOINT = flags.DEFINE_multi_string("checkpoint", ["workdirs/curriculum"],
                                        "training workdir of a policy, optionally NAME=PATH; repeat for several")
_RATIOS = flags.DEFINE_list("ratios", ["0.25", "0.1"], "retention ratios")
_SAMPLES = flags.DEFINE_integer("samples", 256, "held-out videos")
_OUT = flags.DEFINE_string("out", None, "also write the table (markdown) to this file")


def by_type_table(hits: dict, covered: dict, full: dict, names: list[str], ratios: list[float],
                  named_types: tuple[str, ...]) -> str:
  """Markdown: one row per question type; hits/covered[name][qtype][ratio] and full[qtype] are lists of bools."""
  cols = [f"{n} {r:.0%}" for n in names for r in ratios]
  head = ["question type", "names its object", "samples", "all tokens"] + cols + [f"target kept: {c}" for c in cols]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for qtype in sorted(full):
    row = [qtype, "yes" if qtype in named_types else "no", str(len(full[qtype])), f"{np.mean(full[qtype]):.3f}"]
    row += [f"{np.mean(hits[n][qtype][r]):.3f}" for n in names for r in ratios]
    row += [f"{np.mean(covered[n][qtype][r]):.3f}" for n in names for r in ratios]
    lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  from score_jax import eval as eval_lib, evaluation, run_ledger, train as train_lib
  from score_jax.compress.selection import budget
  from score_jax.data.pipeline import make_iterator
  from score_jax.frozen_llm import load_frozen_llm
  from score_jax.methods.keep_policy import as_keep_policy
  from score_jax.models import sharding as shd
  from score_jax.world.generator import STATIC_QUESTION_TYPES
  from score_jax.world.oracle import relevant_token_mask
  from score_jax.world.sources import WorldSource

  args = [eval_lib.split_checkpoint_arg(a) for a in _CHECKPOINT.value]
  first = run_ledger.effective_config(eval_lib.resolve_checkpoint(args[0][1])[0])
  llm = load_frozen_llm(first.model, shd.make_mesh((1, 1, 1), devices=jax.devices()[:1]))
  policies = {}
  for name, path in args:
    run_config, select = eval_lib.load_policy(path, llm)
    policies[name or run_config.get("method", "score")] = as_keep_policy(select)
  if len(policies) != len(args):
    raise SystemExit(f"error: give each --checkpoint its own NAME= (got {_CHECKPOINT.value}).")
  names, ratios = list(policies), list(map(float, _RATIOS.value))
  answer = evaluation.answer_fn(llm)

  src = WorldSource(train_lib.WORLD, kind="video", split="heldout", size=_SAMPLES.value)
  hits = {n: {} for n in names}
  covered = {n: {} for n in names}
  full: dict = {}
  for raw in make_iterator(src, 32, seed=0, shuffle=False, num_epochs=1, drop_remainder=False, num_threads=1):
    b = train_lib.model_inputs(raw, llm)
    visual = llm.encode(llm.params, b["frames"])
    bsz, t, p, d = visual.shape
    features = {"visual": visual, **llm.question_features(b["suffix"], b["suffix_len"])}
    text = evaluation.text_inputs(b, llm)
    flat = visual.reshape(bsz, t * p, d)
    target = relevant_token_mask(raw["relevant"]).reshape(bsz, t * p)
    qtypes = [str(q) for q in raw["question_type"]]
    everything = np.broadcast_to(np.arange(t * p, dtype=np.int32), (bsz, t * p))
    for qtype, ok in zip(qtypes, np.asarray(answer(llm.params, flat, everything, text)) == b["answer"]):
      full.setdefault(qtype, []).append(bool(ok))
    for name, policy in policies.items():
      for ratio in ratios:
        keep = policy.select(features, budget(t * p, ratio))
        pred = np.asarray(answer(llm.params, flat, keep, text, position_mode=policy.position_mode))
        on_target = np.take_along_axis(target, np.asarray(keep), axis=1).any(axis=1)
        for qtype, ok, cov in zip(qtypes, pred == b["answer"], on_target):
          hits[name].setdefault(qtype, {}).setdefault(ratio, []).append(bool(ok))
          covered[name].setdefault(qtype, {}).setdefault(ratio, []).append(bool(cov))
  table = by_type_table(hits, covered, full, names, ratios, STATIC_QUESTION_TYPES)
  print(table)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  app.run(main)
