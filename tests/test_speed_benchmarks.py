"""benchmarks/prefill_vs_reference.py and benchmarks/rl_step.py at smoke size: their tables, not their timings."""
import os
import re
import subprocess
import sys

import pytest

from score_jax.testing.smoke import REPO

PARITY_TOL = 1e-3


def run_script(name: str, *args: str) -> str:
  """stdout of `python benchmarks/<name> args` on one plain CPU device (not the tests' 8 fake ones), XLA's
  backend optimisations off: the tables are checked, not the timings, and compiling is most of the run."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", name), *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  return out.stdout


def table(stdout: str, first_header: str) -> tuple[list[str], list[list[str]]]:
  """(header cells, body rows' cells) of the markdown table whose header starts with `first_header`."""
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
  cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
  body = []
  for line in lines[start + 2:]:
    if not line.startswith("|"):
      break
    body.append(cells(line))
  return cells(lines[start]), body


@pytest.mark.slow  # ~13 s; keeps the default run under 15 minutes
def test_prefill_vs_reference_smoke():
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  stdout = run_script("prefill_vs_reference.py", "--layers=2", "--hidden_size=64", "--intermediate_size=128",
                      "--heads=4", "--kv_heads=2", "--visual_tokens=40", "--text_tokens=6", "--matmul_size=64",
                      "--repeats=1", "--ratios=1.0,0.25", f"--parity_tol={PARITY_TOL}")
  assert "attention 'sdpa'" in stdout and "vocab 1000 (not timed" in stdout
  parity = re.findall(r"parity of (.+?) \(.*relative ([0-9.e+-]+) <=", stdout)
  assert [what for what, _ in parity] == ["final hidden states", "matmuls-only outputs"]
  assert all(float(rel) <= PARITY_TOL for _, rel in parity)
  header, rows = table(stdout, "kept")
  assert header[:5] == ["kept", "tokens", "score_jax s", "transformers s", "ratio (transformers / score_jax)"]
  assert len(header) == 10 and all(len(r) == 10 for r in rows)
  assert [(r[0], int(r[1])) for r in rows] == [("100%", 46), ("25%", 16)]  # kept visual + 6 text
  for r in rows:
    jax_s, torch_s, ratio = float(r[2]), float(r[3]), float(r[4])
    assert ratio == pytest.approx(torch_s / jax_s, rel=0.01, abs=0.01)
    mm_scan, mm_unrolled = (float(x) for x in r[7].split(" / "))
    assert min(jax_s, torch_s, mm_scan, mm_unrolled, float(r[8])) > 0
    assert r[9].endswith("x") and float(r[9][:-1]) == pytest.approx(jax_s / mm_scan, rel=0.01, abs=0.01)
  header, rates = table(stdout, "library")
  assert header[1] == "64x64x64 float32 matmul s"
  assert [r[0] for r in rates] == ["score_jax (XLA)", "transformers (PyTorch)"]
  assert all(float(r[2]) == pytest.approx(2 * 64 ** 3 / float(r[1]) / 1e9, rel=0.01, abs=0.05) for r in rates)


@pytest.mark.slow  # ~25 s; keeps the default run under 15 minutes
def test_rl_step_smoke():
  stdout = run_script("rl_step.py", f"--config={os.path.join(REPO, 'experiments', 'smoke.py')}",
                      "--config.batch_size=2", "--config.rl.group_size=3", "--repeats=1")
  assert "train-step compilations: 1;" in stdout
  assert "8x16=128 visual tokens per video, 13 kept" in stdout  # the embedded world at rl.ratio=0.1
  header, rows = table(stdout, "batch")
  assert header == ["batch", "group", "rollouts/step", "step s", "rollouts/s", "LLM s", "LLM share", "policy s",
                    "policy share", "remainder s"]
  [r] = rows
  assert (int(r[0]), int(r[1]), int(r[2])) == (2, 3, 6)
  step_s, llm_s, policy_s = float(r[3]), float(r[5]), float(r[7])
  assert min(step_s, llm_s, policy_s) > 0
  assert float(r[4]) == pytest.approx(6 / step_s, rel=0.01)
  assert float(r[6].rstrip("%")) == pytest.approx(100 * llm_s / step_s, abs=1)
  assert float(r[9]) == pytest.approx(step_s - llm_s - policy_s, rel=0.01, abs=1e-3)
