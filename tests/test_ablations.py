"""Ablations as config overrides, and their table over seeds."""
import json
import os

import pytest

from score_jax import ablations
from score_jax.testing.smoke import experiment_config


def test_each_ablation_changes_what_it_names_and_nothing_else():
  base = experiment_config("curriculum")
  flat = lambda c: {k: v for k, v in _flatten(c.to_dict())}
  ref = flat(base)
  for name in ablations.ABLATIONS:
    diff = {k for k, v in flat(ablations.ablated(base, name)).items() if ref[k] != v}
    assert (diff == set()) == (name == "score"), (name, diff)
  assert ablations.ablated(base, "summed_reward").rl.advantage == "grpo"
  assert ablations.ablated(base, "no_stage1").curriculum == "video:5200"
  assert base.rl.advantage == "split"  # the base config is untouched
  with pytest.raises(ValueError, match="Unknown ablation"):
    ablations.ablated(base, "nope")


def _flatten(d, prefix=""):
  for k, v in d.items():
    if isinstance(v, dict):
      yield from _flatten(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}", v


def test_run_ablations_reuses_finished_runs_and_tabulates(tmp_path):
  base = experiment_config("curriculum")
  trained = []

  def fake_train(c):  # writes what train writes at the end: eval.json per held-out set
    trained.append((c.workdir, c.rl.advantage, c.seed))
    acc = 0.9 if c.rl.advantage == "split" else 0.7
    os.makedirs(c.workdir)
    with open(os.path.join(c.workdir, "eval.json"), "w") as f:
      json.dump({"clean": {"full@1.0": 1.0, "score@0.1": acc + 0.01 * c.seed, "score@0.25": 0.95}}, f)

  names = ["score", "summed_reward"]
  aggs = ablations.run_ablations(base, names, ["0", "2"], str(tmp_path), fake_train)
  assert sorted(t[1:] for t in trained) == [("grpo", 0), ("grpo", 2), ("split", 0), ("split", 2)]
  assert aggs["summed_reward"]["clean"]["score@0.1"][0] == pytest.approx(0.71)
  ablations.run_ablations(base, names, ["0", "2"], str(tmp_path), fake_train)
  assert len(trained) == 4  # finished runs are read, not retrained
  table = ablations.format_ablations(aggs, "score", (1.0, 0.25, 0.1))
  assert "| score | 2 | 1.000 ± 0.000 | 0.950 ± 0.000 | 0.910 ± 0.010 | - |" in table
  assert "| summed_reward | 2 |" in table and "`summed_reward`: GRPO" in table
