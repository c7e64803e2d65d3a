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


def _run_by_type(a_static, a_moving, n_static=(3, 1)):
  n = {"all": sum(n_static) + 2, "color": n_static[0], "shape": n_static[1], "moving": 2}
  acc = {"m@0.1": {"color": a_static[0], "shape": a_static[1], "moving": a_moving}}
  return {"clean": {"m@0.1": 0.5, "by_category": [{"task": "world", "field": "question_type", "n": n,
                                                   "accuracy": acc},
                                                  {"task": "world", "field": "other", "n": n, "accuracy": acc}]}}


def test_category_runs_pool_by_sample_count_over_seeds():
  runs = [_run_by_type((1.0, 0.0), 0.5), _run_by_type((0.5, 1.0), 0.7)]
  agg = multi_seed.category_runs(runs, "question_type", {"named": ("color", "shape")})
  cell = agg["clean"]["m@0.1"]
  assert cell["moving"] == pytest.approx((0.6, 0.1, 2))
  # run 1: (3 * 1.0 + 1 * 0.0) / 4 = 0.75; run 2: (3 * 0.5 + 1.0) / 4 = 0.625
  assert cell["named"] == pytest.approx((0.6875, 0.0625, 2))
  table = multi_seed.format_categories(agg, "question_type")
  assert "| m@0.1 | 0.750 ± 0.250 | 0.500 ± 0.500 | 0.600 ± 0.100 | 0.688 ± 0.062 |" in table
  with pytest.raises(ValueError, match="'size'"):
    multi_seed.category_runs(runs, "question_type", {"named": ("color", "size")})
  with pytest.raises(ValueError, match="no run holds accuracy by 'duration'"):
    multi_seed.category_runs(runs, "duration")
