"""A seconds-long run of the whole pipeline (both curriculum stages, checkpoints, eval); used by tests.

    python -m score_jax.train --config=experiments/smoke.py --config.workdir=/tmp/smoke
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import curriculum  # noqa: E402


def get_config():
  c = curriculum.get_config()
  c.workdir = "workdirs/smoke"
  c.batch_size = 2
  c.curriculum = "pseudo:3,video:3"
  c.rl.group_size = 2
  c.rl.ppo_epochs = 1
  c.policy.hidden = 16
  c.checkpoint_every = 2
  c.log_every = 1
  c.data.train_size = 64
  c.eval.samples = 8
  c.eval.batch_size = 8
  c.eval.random_seeds = 1
  return c
