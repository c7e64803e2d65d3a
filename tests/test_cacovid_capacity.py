"""benchmarks/cacovid_capacity.py: the per-type top-1-on-target share, and the script at smoke size (slow)."""
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from score_jax.testing.smoke import REPO


def _module():
  spec = importlib.util.spec_from_file_location("cacovid_capacity", os.path.join(REPO, "benchmarks",
                                                                                  "cacovid_capacity.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_top1_on_target_counts_only_frames_that_hold_the_target():
  target = np.zeros((2, 3, 4), bool)
  target[0, 0, 1] = target[0, 1, 2] = True  # video 0: frames 0 and 1 hold the target, frame 2 does not
  target[1, :, 3] = True
  logits = np.zeros((2, 3, 4))
  logits[0, 0, 1] = logits[0, 1, 0] = logits[0, 2, 0] = 5.0  # frame 0 right, frame 1 wrong, frame 2 not counted
  logits[1, :, 3] = 1.0
  share = _module().top1_on_target(logits, target, np.array(["a", "b"]))
  assert share == {"a": 0.5, "b": 1.0}


@pytest.mark.slow
def test_capacity_script_runs_at_smoke_size():
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "cacovid_capacity.py"),
                        f"--config={os.path.join(REPO, 'experiments', 'cacovid.py')}", "--train=32", "--heldout=16",
                        "--steps=4", "--every=2", "--batch=4"], cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert len(re.findall(r"^step [24]: loss \S+: held-out frames", out.stdout, re.M)) == 2, out.stdout
