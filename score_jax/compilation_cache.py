"""JAX's persistent compilation cache as a config option (`config.compilation_cache_dir`, "" = off).

Compiled programs are written to that folder and reused by later runs of the same program on the
same backend, so a restart after preemption (or a second eval) skips most of the compile time. Use a
folder every host can reach on a pod (e.g. a gs:// bucket or the shared file system).
"""
from __future__ import annotations

import os

KEY = "compilation_cache_dir"


def check(config) -> str:
  """The configured folder ("" = off); raises ValueError naming the field when it is not a usable path."""
  value = config.get(KEY, "")
  if not isinstance(value, str):
    raise ValueError(f"config.{KEY}={value!r} must be a folder path (a string; '' turns the cache off).")
  path = value if "://" in value else os.path.expanduser(value)
  if path and "://" not in path and os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"config.{KEY}={value!r} is a file; it must be a folder (created if missing).")
  return path


def enable(config) -> str:
  """Turns the cache on when `config.compilation_cache_dir` is set (call before the first compile)."""
  path = check(config)
  if path:
    import jax
    jax.config.update("jax_compilation_cache_dir", path)
  return path
