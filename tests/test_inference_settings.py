"""Inference settings of trained policies given on the command line (`benchmarks/compare.py --inference`)."""
import ml_collections
import pytest

from score_jax import eval as eval_lib
from score_jax.testing.smoke import experiment_config


def test_inference_settings_are_parsed_and_only_inference_keys_pass():
  assert eval_lib.parse_inference(["cacovid_eval.imp=1.0", "cacovid_eval.imp=0.25"]) == {"cacovid_eval.imp": 0.25}
  assert eval_lib.parse_inference([]) == {}
  for bad in ("rl.ratio=0.1", "cacovid_eval.imp"):
    with pytest.raises(ValueError, match="--inference"):
      eval_lib.parse_inference([bad])


def test_a_setting_no_given_policy_has_is_named():
  score, cacovid = experiment_config("curriculum"), experiment_config("cacovid")
  assert eval_lib.unused_inference_keys({"cacovid_eval.imp": 1.0}, [score, cacovid]) == []
  assert eval_lib.unused_inference_keys({"cacovid_eval.imp": 1.0}, [score]) == ["cacovid_eval.imp"]
  assert eval_lib.unused_inference_keys({"cacovid_eval.ipm": 1.0}, [cacovid]) == ["cacovid_eval.ipm"]
  assert eval_lib.unused_inference_keys({}, [ml_collections.ConfigDict()]) == []
  # a run recorded before its method's inference section (or one setting of it) existed takes that section's
  # settings; a misspelt one is named either way, and a CaCoVID run does not take SCORE's section it inherits
  old_score = experiment_config("curriculum")
  del old_score["score_eval"]
  assert eval_lib.takes_inference(old_score, "score_eval.tail")
  assert not eval_lib.takes_inference(old_score, "cacovid_eval.imp")
  assert eval_lib.unused_inference_keys({"score_eval.tail": 1e-4}, [old_score]) == []
  for run in (score, old_score):
    assert eval_lib.unused_inference_keys({"score_eval.tial": 1e-4}, [run]) == ["score_eval.tial"]
  before_floor = experiment_config("curriculum")
  del before_floor["score_eval"]["floor"]
  assert eval_lib.unused_inference_keys({"score_eval.floor": 0.05}, [before_floor]) == []
  assert "score_eval" in cacovid and not eval_lib.takes_inference(cacovid, "score_eval.tail")
