"""score_jax/question_swap.py pairs each sample with another question (of its type or of another), and
benchmarks/policy_by_type.py runs with it at smoke size (slow)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from score_jax import question_swap
from score_jax.testing.smoke import REPO

SCRIPT = os.path.join(REPO, "benchmarks", "policy_by_type.py")


def test_swap_partner_has_another_question_of_the_same_or_of_another_type():
  qtypes = ["static_color", "moving_color", "static_color", "static_color", "moving_color", "appear_color"]
  questions = ["what color is the star", "what color is the moving shape", "what color is the star",
               "what color is the heart", "what color is the moving shape", "what color is the shape that appears"]
  partner = question_swap.question_partner(qtypes, questions)
  # 0 -> 3 (2 has the same text), 2 -> 3, 3 -> 0 (cyclic); no other question text for the rest: themselves.
  np.testing.assert_array_equal(partner, [3, 1, 3, 0, 4, 5])
  for i, j in enumerate(partner):
    assert qtypes[j] == qtypes[i]
  other = question_swap.question_partner(qtypes, questions, same_type=False)
  np.testing.assert_array_equal(other, [1, 2, 4, 4, 5, 0])
  assert all(qtypes[j] != qtypes[i] for i, j in enumerate(other))


@pytest.mark.slow
def test_script_runs_with_swapped_questions_on_the_crowded_set(tmp_path, uninterrupted):
  out_md = tmp_path / "by_type.md"
  out = subprocess.run([sys.executable, SCRIPT, f"--checkpoint=score={uninterrupted[0]}", "--samples=8",
                        "--ratios=0.1", "--set=crowded", "--swap_questions=any_type", f"--out={out_md}"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  header = out_md.read_text().splitlines()[0]
  assert "score 10%" in header and "score any_type swap 10%" in header
  # SCORE does not read the question: the swapped run keeps the same tokens, so every cell pair is equal.
  for line in out_md.read_text().splitlines()[2:]:
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[4] == cells[5] and cells[6] == cells[7], line
  assert re.search(r"\| static_(color|shape) \| yes \|", out_md.read_text())


def test_partner_questions_replace_the_question_entries_only():
  features = {"visual": np.arange(3), "question": np.array([[1.0], [2.0], [3.0]]),
              "question_mask": np.array([[True], [False], [True]])}
  out = question_swap.with_partner_questions(features, np.array([2, 0, 1]))
  np.testing.assert_array_equal(out["visual"], [0, 1, 2])
  np.testing.assert_array_equal(out["question"], [[3.0], [1.0], [2.0]])
  np.testing.assert_array_equal(out["question_mask"], [[True], [True], [False]])
