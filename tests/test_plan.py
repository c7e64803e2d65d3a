"""`python -m score_jax.plan`: ahead-of-time memory plan of the train step and eval prefill from abstract
shapes (the embedded model's config.json only; the 8 fake CPU devices of conftest.py in process)."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from score_jax import plan as plan_lib
from score_jax.models import sharding as shd
from score_jax.testing.smoke import REPO, experiment_config, override


def smoke(**overrides):
  return override(experiment_config("smoke"), **{"batch_size": 8, **overrides})


def test_parse_bytes():
  assert plan_lib.parse_bytes("16GiB") == 16 * 2**30
  assert plan_lib.parse_bytes("80GB") == 80 * 10**9
  assert plan_lib.parse_bytes("1.5 MiB") == 3 * 2**19
  assert plan_lib.parse_bytes("123") == 123
  with pytest.raises(ValueError, match="--device_memory='16 parsecs'"):
    plan_lib.parse_bytes("16 parsecs")


def test_llm_parameters_per_device_follow_the_mesh():
  config = smoke()
  whole = plan_lib.abstract_llm(config, shd.make_mesh((8, 1, 1))).params  # replicated over data
  fsdp = plan_lib.abstract_llm(config, shd.make_mesh((1, 8, 1))).params
  total = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(whole))
  assert plan_lib.per_device_bytes(whole) == total
  assert plan_lib.per_device_bytes(fsdp) < total / 4  # most of it split 8 ways


def test_7b_architecture_has_the_checkpoint_shapes():
  cfg = plan_lib.model_config(None, "llava-onevision-qwen2-7b-ov-hf")
  assert (cfg.text.hidden_size, cfg.text.num_hidden_layers, cfg.tokens_per_frame) == (3584, 28, 196)
  with pytest.raises(ValueError, match="--architecture='llava-7b'"):
    plan_lib.model_config(None, "llava-7b")


def test_plan_compiles_both_programs_and_judges_the_fit():
  config = smoke()
  mesh = shd.make_mesh((8, 1, 1))
  programs, table, fits = plan_lib.plan(config, mesh, device_memory=2**30)
  train, prefill = programs
  assert fits and "DOES NOT FIT" not in table and "8 devices" in table
  for p in programs:
    assert p.temp > 0 and p.total <= 2**30
    assert p.parts["batch"] <= p.argument <= sum(p.parts.values()) + 1024  # unused LLM weights are pruned
  assert train.parts["optimizer state"] > train.parts["policy parameters"] > 0  # AdamW: two moments
  assert train.alias > 0  # the state is donated
  assert "128 of 128 tokens" in prefill.name  # eval at retention 1.0: every token
  smallest = min(p.total for p in programs)
  assert plan_lib.format_table(programs, smallest - 1, "m").count("DOES NOT FIT") >= 1


def test_indivisible_batch_is_a_clear_error():
  with pytest.raises(ValueError, match="config.batch_size=2 cannot be split over the 8 batch shards"):
    plan_lib.plan(smoke(batch_size=2), shd.make_mesh((8, 1, 1)), 2**30)


def _cli(*args):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  return subprocess.run([sys.executable, "-m", "score_jax.plan", "--config=experiments/smoke.py", *args],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


@pytest.mark.slow
def test_command_starts_its_own_devices_and_exits_1_when_it_does_not_fit():
  out = _cli("--devices=2", "--device_memory=1KiB")  # a device count of its own, unlike this process's 8
  assert out.returncode == 1, out.stderr
  assert "2 devices, mesh data=2" in out.stdout and "DOES NOT FIT" in out.stdout


def test_command_bad_input_exits_2():
  out = _cli("--devices=3", "--device_memory=16GiB")
  assert out.returncode == 2
  assert "config.batch_size=2 cannot be split over the 3 batch shards" in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("devices,memory", [(64, "16GiB"), (8, "80GB")])
def test_7b_config_fits_v5e_64_and_8_gpus(devices, memory):
  """The numbers of BUILD_NOTES.md: experiments/llava_ov_7b.py on 64 x 16 GiB (v5e-64) and 8 x 80 GB."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  out = subprocess.run([sys.executable, "-m", "score_jax.plan", "--config=experiments/llava_ov_7b.py",
                        f"--devices={devices}", f"--device_memory={memory}",
                        "--architecture=llava-onevision-qwen2-7b-ov-hf"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=1200)
  print(out.stdout)
  assert out.returncode == 0, out.stdout + out.stderr
