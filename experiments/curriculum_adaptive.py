"""SCORE's adaptive mode on the embedded default: each video keeps its own number of tokens.

    python -m score_jax.train --config=experiments/curriculum_adaptive.py
    python benchmarks/seeds.py --config=experiments/curriculum_adaptive.py --seeds=0,1,2 --out=workdirs/seeds_adaptive

The policy draws each rollout's size from a count head over `rl.count_levels` (5-15% of the tokens)
and its tokens as a Plackett-Luce subset of that size (`rl.sampler="sized_topk"`), so the kept count
varies within a group and the split advantage's compression term does work: sparsity is credited to
rollouts that answer right. A two-sided Lagrange multiplier on that term (`rl.budget_control`) holds
the rollouts' mean retention at `rl.budget`. Eval reports the fixed ratios and the adaptive row (each
video's expected level count; accuracy with the mean ± std retention). The keep/drop (Bernoulli)
variant: `--config.rl.sampler=bernoulli --config.rl.logprob=bernoulli --config.rl.ratio=0.4`.
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
  c.rl.ratio = 0.15                  # the static cap: the largest level
  c.rl.budget = 0.1
  c.rl.comp_reward = "sparsity"
  c.rl.budget_control = "lagrange_two_sided"
  return c
