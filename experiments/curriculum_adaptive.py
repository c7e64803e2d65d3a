"""SCORE's adaptive mode on the embedded default: each video keeps its own number of tokens.

    python -m score_jax.train --config=experiments/curriculum_adaptive.py
    python benchmarks/calibrate_tail.py --checkpoint=workdirs/curriculum_adaptive --target=0.095 --cap=0.2
    python -m score_jax.eval --config=experiments/curriculum_adaptive.py --checkpoint=workdirs/curriculum_adaptive \
        --config.score_eval.tail=<printed> --config.score_eval.cap=0.2

Training: each rollout's size is drawn from a count head over `rl.count_levels` (5-15% of the tokens,
a fifth of the draws uniform) and its tokens as a Plackett-Luce subset of that size
(`rl.sampler="sized_topk"`), so the kept count varies within a group and the split advantage's
compression term does work: sparsity is credited to rollouts that answer right. A two-sided Lagrange
multiplier on that term (`rl.budget_control`) holds the rollouts' mean retention at `rl.budget`.
Inference: the count head ends up the same for every video on the embedded world (BUILD_NOTES.md), so
the adaptive mode that varies per video is the tail rule: the fewest top-scored tokens that leave at
most `score_eval.tail` of the keep distribution outside, with the tail calibrated on training videos.
The keep/drop (Bernoulli) variant: `--config.rl.sampler=bernoulli --config.rl.logprob=bernoulli
--config.rl.ratio=0.4`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import curriculum  # noqa: E402


def get_config():
  c = curriculum.get_config()
  c.workdir = "workdirs/curriculum_adaptive"
  c.rl.sampler = "sized_topk"
  c.rl.logprob = "sized_plackett_luce"
  c.rl.count_levels = (0.05, 0.075, 0.1, 0.125, 0.15)
  c.rl.ratio = 0.15                  # the static cap of training: the largest level
  c.rl.budget = 0.095                # below 10%: the middle level keeps 13 of 128 tokens (10.2%)
  c.rl.comp_reward = "sparsity"
  c.rl.budget_control = "lagrange_two_sided"
  return c
