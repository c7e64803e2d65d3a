"""A seconds-long CaCoVID run through the same `train` command (used by tests).

    python -m score_jax.train --config=experiments/cacovid_smoke.py --config.workdir=/tmp/cacovid_smoke
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import cacovid  # noqa: E402


def get_config():
  c = cacovid.get_config()
  c.workdir = "workdirs/cacovid_smoke"
  c.batch_size = 2
  c.curriculum = "pseudo:2,video:2"
  c.cacovid.token_rollouts = 2
  c.cacovid.frame_rollouts = 2
  c.cacovid.visits = 2
  c.checkpoint_every = 2
  c.log_every = 1
  c.data.train_size = 64
  c.eval.samples = 8
  c.eval.batch_size = 8
  c.eval.random_seeds = 1
  c.eval.methods = ("uniform_pool", "random")
  return c
