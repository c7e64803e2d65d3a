"""benchmarks/llm_question_attention.py on the shipped embedded model (about 11 s): the LLM's first layer finds the
object a static question names from one prompt position, which CaCoVID's warm start relies on."""
import os
import re
import subprocess
import sys

from score_jax.testing.smoke import REPO


def test_first_layer_finds_the_named_object_from_one_prompt_position():
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "llm_question_attention.py"),
                        f"--config={os.path.join(REPO, 'experiments', 'cacovid.py')}", "--samples=96"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = re.findall(r"^\| (\w+) \| (\d) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", out.stdout, re.M)
  table = {(qtype, int(layer)): tuple(map(float, shares)) for qtype, layer, *shares in rows}
  assert {qtype for qtype, _ in table} >= {"static_color", "static_shape", "appear_color"}, out.stdout
  assert all(0.0 <= v <= 1.0 for shares in table.values() for v in shares)
  for qtype in ("static_color", "static_shape"):
    last, mean, _, best = table[(qtype, 0)]
    assert best >= 0.8 and best > max(last, mean) + 0.3, (qtype, table[(qtype, 0)])
