"""Test setup: 8 fake CPU devices for sharding tests, no network, slow tests opt-in."""
import os
import re

# Force 8 host devices whatever the caller's environment says: JAX_NUM_CPU_DEVICES wins over
# XLA_FLAGS in jax, so both are set (a CI runner may export either with another count).
_flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ["JAX_NUM_CPU_DEVICES"] = "8"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes minutes; run with --runslow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip = pytest.mark.skip(reason="slow; run with --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_embedded_model(tmp_path_factory):
  """An embedded-model checkpoint folder trained for 2 steps: right format and shapes, fast to build."""
  from score_jax.embedded import base_model
  folder = str(tmp_path_factory.mktemp("embedded_llava"))
  settings = base_model.BaseModelSettings(steps=2, vision_steps=2, batch_size=4, eval_samples=8)
  base_model.build_base_model(folder, settings, progress=False)
  return folder


@pytest.fixture(scope="session")
def uninterrupted(tiny_embedded_model, tmp_path_factory):
  """(workdir, train output) of the smoke experiment run start to end without interruption."""
  from score_jax import train as train_lib
  from score_jax.testing.smoke import smoke_config
  workdir = tmp_path_factory.mktemp("run_full")
  return workdir, train_lib.train(smoke_config(workdir, tiny_embedded_model))
