"""SCORE's ablations, each over several seeds, in one command (definitions: score_jax/ablations.py).

    python benchmarks/ablations.py --config=experiments/curriculum.py --seeds=0,1,2 --out=workdirs/ablations
    python benchmarks/ablations.py --config=experiments/curriculum.py --ablations=score,summed_reward \
        --config.rl.sampler=bernoulli --config.rl.logprob=bernoulli   # any --config.x=y applies to all

Runs one training at a time (2-core machines: never two at once); writes `<out>/ablations.md`.
"""
from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

from score_jax import ablations, train as train_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds")
_NAMES = flags.DEFINE_list("ablations", list(ablations.ABLATIONS), "ablations to run (score_jax/ablations.py)")
_OUT = flags.DEFINE_string("out", None, "folder for the runs and ablations.md")


def main(argv):
  del argv
  config = _CONFIG.value
  out = _OUT.value or os.path.join(os.path.dirname(config.workdir) or ".", "ablations")
  aggs = ablations.run_ablations(config, _NAMES.value, _SEEDS.value, out, train_lib.train)
  table = ablations.format_ablations(aggs, config.method, tuple(config.eval.ratios))
  print(table)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "ablations.md"), "w") as f:
    f.write(table + "\n")


if __name__ == "__main__":
  app.run(main)
