"""benchmarks/compare.py's inference settings for trained policies."""
import importlib.util
import os

import pytest
from absl import app

from score_jax.testing.smoke import REPO


def _compare():
  spec = importlib.util.spec_from_file_location("_compare", os.path.join(REPO, "benchmarks", "compare.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_inference_settings_are_parsed_and_only_inference_keys_pass():
  compare = _compare()
  assert compare.parse_inference(["cacovid_eval.imp=1.0", "cacovid_eval.imp=0.25"]) == {"cacovid_eval.imp": 0.25}
  assert compare.parse_inference([]) == {}
  for bad in ("rl.ratio=0.1", "cacovid_eval.imp"):
    with pytest.raises(app.UsageError, match="--inference"):
      compare.parse_inference([bad])
