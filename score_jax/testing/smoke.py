"""The smoke experiment (`experiments/smoke.py`) as tests build it: a workdir, a model folder, overrides."""
from __future__ import annotations

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def experiment_config(name: str):
  """`get_config()` of experiments/<name>.py (the configs import their parents by file path)."""
  path = os.path.join(REPO, "experiments", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_experiment_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def override(config, **overrides):
  """Sets dotted keys: override(c, **{"rl.ratio": 0.25})."""
  for k, v in overrides.items():
    node = config
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return config


def smoke_config(workdir, checkpoint, name: str = "smoke", **overrides):
  c = experiment_config(name)
  c.workdir = str(workdir)
  c.model.checkpoint = checkpoint
  c.model.mesh = (1, 1, 1)
  return override(c, **overrides)
