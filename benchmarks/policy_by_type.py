"""Accuracy of trained policies on the embedded world's held-out videos, per question type.

    python benchmarks/policy_by_type.py --checkpoint=score=workdirs/curriculum \
        --checkpoint=cacovid=workdirs/cacovid --ratios=0.25,0.1 [--set=crowded] \
        [--swap_questions=same_type] [--out=by_type.md]

Shows where a policy loses accuracy and what question conditioning buys: per question type (and whether
the question names its target object: the static types, `world.generator.STATIC_QUESTION_TYPES`), the
frozen model's accuracy with all tokens, each policy's accuracy at each ratio, and how often at least one
kept token covers the target object (from the generator's object masks). Works for any method's workdir
(SCORE, question-blind; CaCoVID, which reads the question's embeddings). The frozen model and held-out
videos (the first `--samples` of `--set`, as `score_jax.train`) come from the first checkpoint's run config.

`--swap_questions=same_type` also runs every policy with the prompt after the video (question and options)
of another held-out sample of the same question type, `any_type` of a sample of another type (the frozen
model still reads the true prompt): a policy that reads the object the question names loses accuracy and
target coverage on the static types under `same_type`; one that reads only what kind of question it is
changes under `any_type` alone; a question-blind one cannot change ("NAME ... swap" columns).
"""
from __future__ import annotations

from absl import app, flags
import jax
import numpy as np

from score_jax.world.heldout_sets import HELDOUT_SETS

_CHECKPOINT = flags.DEFINE_multi_string("checkpoint", ["workdirs/curriculum"],
                                        "training workdir of a policy, optionally NAME=PATH; repeat for several")
_RATIOS = flags.DEFINE_list("ratios", ["0.25", "0.1"], "retention ratios")
_SAMPLES = flags.DEFINE_integer("samples", 256, "held-out videos")
_SET = flags.DEFINE_enum("set", "clean", list(HELDOUT_SETS), "held-out set (score_jax/world/heldout_sets.py)")
_SWAP = flags.DEFINE_enum("swap_questions", "none", ["none", "same_type", "any_type"],
                          "also run each policy with another sample's question: of the same type (does it read "
                          "the named object?) or of any type (does it read the question at all?)")
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
  from score_jax import eval as eval_lib, evaluation, question_swap, run_ledger, train as train_lib
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

  from score_jax.world import heldout_sets
  world = heldout_sets.world_of(_SET.value, train_lib.WORLD)
  lossy = train_lib.lossy_settings(first) if heldout_sets.is_lossy(_SET.value) else None
  src = WorldSource(world, kind="video", split="heldout", size=_SAMPLES.value, lossy=lossy)
  runs = [(n, n, False) for n in names]
  runs += [(f"{n} {_SWAP.value} swap", n, True) for n in names] if _SWAP.value != "none" else []
  hits = {r: {} for r, _, _ in runs}
  covered = {r: {} for r, _, _ in runs}
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
    partner = question_swap.question_partner(qtypes, [str(q) for q in raw["question"]], _SWAP.value == "same_type")
    swapped = question_swap.with_partner_questions(features, partner)
    for name, method, other_question in runs:
      policy = policies[method]
      for ratio in ratios:
        keep = policy.select(swapped if other_question else features, budget(t * p, ratio))
        pred = np.asarray(answer(llm.params, flat, keep, text, position_mode=policy.position_mode))
        on_target = np.take_along_axis(target, np.asarray(keep), axis=1).any(axis=1)
        for qtype, ok, cov in zip(qtypes, pred == b["answer"], on_target):
          hits[name].setdefault(qtype, {}).setdefault(ratio, []).append(bool(ok))
          covered[name].setdefault(qtype, {}).setdefault(ratio, []).append(bool(cov))
  table = by_type_table(hits, covered, full, [r for r, _, _ in runs], ratios, STATIC_QUESTION_TYPES)
  print(table)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  app.run(main)
