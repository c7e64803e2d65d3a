"""SCORE's adaptive (keep/drop) mode on the embedded default: each video keeps its own number of tokens.

    python -m score_jax.train --config=experiments/curriculum_adaptive.py
    python benchmarks/seeds.py --config=experiments/curriculum_adaptive.py --seeds=0,1,2 --out=workdirs/seeds_adaptive

Bernoulli keep/drop masks under a static cap of 20% (`rl.ratio`), the split advantage with the
sparsity reward, and a Lagrange multiplier on the compression term (`rl.budget_control`) that holds
the mean retention of the rollouts at `rl.budget` = 10%. Eval reports the fixed ratios and the
adaptive row (accuracy, mean ± std retention).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import curriculum  # noqa: E402


def get_config():
  c = curriculum.get_config()
  c.workdir = "workdirs/curriculum_adaptive"
  c.rl.sampler = "bernoulli"
  c.rl.logprob = "bernoulli"
  c.rl.ratio = 0.2
  c.rl.budget = 0.1
  c.rl.comp_reward = "sparsity"
  c.rl.budget_control = "lagrange"
  return c
