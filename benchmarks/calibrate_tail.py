"""The `score_eval.tail` at which a trained SCORE policy keeps a target mean retention, found on
*training* videos of the generated world (never the held-out ones), for adaptive inference.

    python benchmarks/calibrate_tail.py --checkpoint=workdirs/curriculum --target=0.095 --cap=0.2
    python -m score_jax.eval --config=experiments/curriculum.py --checkpoint=workdirs/curriculum \\
        --config.score_eval.tail=<printed> --config.score_eval.cap=0.2

Each video then keeps the fewest top-scored tokens that leave at most `tail` of the policy's
softmax probability outside (`selection.tail_count`), at most `cap` of its tokens and at least `--floor`
(pass the same `--config.score_eval.floor` to eval). `--lossy_fraction`
of the calibration videos (default 0; the run's stage-2 mix is `data.lossy_fraction`, 0.5) pass through
the H.264 round trip first, as that share of stage 2's training videos do.
"""
from __future__ import annotations

from absl import app, flags
import jax.numpy as jnp
import numpy as np

from score_jax import eval as eval_lib, run_ledger
from score_jax.compress.selection import budget, calibrate_tail, tail_count
from score_jax.embedded.world_text import WORLD
from score_jax.frozen_llm import load_frozen_llm
from score_jax.methods.score import check_floor, min_count
from score_jax.rl import train_step as ts
from score_jax.train import lossy_settings, ordered_batches
from score_jax.world.sources import WorldSource

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "a SCORE training workdir", required=True)
_TARGET = flags.DEFINE_float("target", 0.095, "mean retention to reach (at most)")
_CAP = flags.DEFINE_float("cap", 0.2, "largest retention of one video")
_SAMPLES = flags.DEFINE_integer("samples", 512, "training videos to calibrate on")
_LOSSY = flags.DEFINE_float("lossy_fraction", 0.0, "share of them through the H.264 round trip first")
_FLOOR = flags.DEFINE_float("floor", 0.0, "smallest retention of one video (0: one token)")


def main(argv):
  del argv
  try:
    check_floor(_FLOOR.value, _CAP.value, ("--floor", "--cap"))
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  config = run_ledger.effective_config(eval_lib.resolve_checkpoint(_CHECKPOINT.value)[0])
  llm = load_frozen_llm(config.model, None)
  _, _, policy, params = eval_lib.load_policy_params(_CHECKPOINT.value, llm)
  if config.method != "score" or getattr(policy, "query_conditioned", False):
    raise SystemExit(f"error: {_CHECKPOINT.value} is not a question-blind SCORE run; the tail rule is calibrated "
                     "on SCORE's video-only keep logits.")
  fraction = _LOSSY.value
  if not 0.0 <= fraction <= 1.0:
    raise SystemExit(f"error: --lossy_fraction={fraction} must be in [0, 1].")
  src = WorldSource(WORLD, kind="video", split="train", size=_SAMPLES.value,
                    lossy=lossy_settings(config, fraction) if fraction else None)
  logits = []
  for _, b in ordered_batches(config, llm, src):
    visual = b["visual"] if "visual" in b else llm.encode(llm.params, b["frames"])
    logits.append(np.asarray(ts.policy_logits(policy, params, visual)))
  logits = jnp.asarray(np.concatenate(logits))
  n = logits.shape[-1]
  k_max, k_min = budget(n, _CAP.value), min_count(n, _FLOOR.value)
  try:
    tail = calibrate_tail(logits, _TARGET.value, k_max, k_min)
  except ValueError as e:
    raise SystemExit(f"error: {e}") from None
  kept = np.asarray(tail_count(logits, tail, k_max, k_min)) / n
  print(f"score_eval.tail={tail:.6g}  (on {len(kept)} training videos, {fraction:.0%} through H.264: "
        f"retention {kept.mean():.4f} ± {kept.std():.4f}, min {kept.min():.3f}, max {kept.max():.3f}; cap {_CAP.value}, "
        f"floor {_FLOOR.value})")


if __name__ == "__main__":
  app.run(main)
