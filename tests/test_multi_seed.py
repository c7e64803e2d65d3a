"""Mean ± std over seeds from the runs' eval.json files."""
import json

import pytest

from score_jax import multi_seed


def run(full, score, kept):
  return {"clean": {"full@1.0": full, "score@0.1": score, "score (adaptive)@adaptive": score,
                    "retention": {"score (adaptive)": {"mean": kept, "std": 0.01}}, "samples": 8}}


def test_aggregate_and_table():
  agg = multi_seed.aggregate([run(0.9, 0.8, 0.08), run(1.0, 0.6, 0.10)])
  mean, std, n = agg["clean"]["score@0.1"]
  assert n == 2 and mean == pytest.approx(0.7) and std == pytest.approx(0.1)
  assert agg["clean"]["score (adaptive)@kept"][0] == pytest.approx(0.09)
  table = multi_seed.format_aggregate(agg, (1.0, 0.1), ["score"])
  assert "| score | 0.700 ± 0.100 (73.7%) |" in table and "(2 seeds)" in table
  assert "at a mean retention of 9.0% ± 1.0%" in table


def test_read_eval_names_a_missing_run(tmp_path):
  with pytest.raises(FileNotFoundError, match="has not finished"):
    multi_seed.read_eval(str(tmp_path))
  (tmp_path / "eval.json").write_text(json.dumps(run(1.0, 0.5, 0.1)))
  assert multi_seed.read_eval(str(tmp_path))["clean"]["score@0.1"] == 0.5


def test_rows_and_ratios_come_from_the_reports():
  agg = multi_seed.aggregate([run(0.9, 0.8, 0.08), {"clean": {"full@1.0": 0.9, "random@0.25": 0.5, "score@0.1": 0.7}}])
  assert multi_seed.rows_and_ratios(agg) == (["score", "random"], (1.0, 0.25, 0.1))
  adaptive_only = multi_seed.aggregate([{"clean": {"full@1.0": 0.9, "score (adaptive)@adaptive": 0.8,
                                                   "retention": {"score (adaptive)": {"mean": 0.1, "std": 0.0}}}}])
  methods, ratios = multi_seed.rows_and_ratios(adaptive_only)
  assert methods == [] and ratios == (1.0,)
  table = multi_seed.format_aggregate(adaptive_only, ratios, methods)
  assert "| method |" not in table and "score (adaptive): 0.800 ± 0.000 (88.9%)" in table
