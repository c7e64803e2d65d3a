"""Name -> selector registry for training-free baselines."""
from __future__ import annotations

from typing import Callable

SELECTORS: dict[str, Callable] = {}


def register_selector(name: str) -> Callable:
  def wrap(fn: Callable) -> Callable:
    if name in SELECTORS:
      raise ValueError(f"selector {name!r} already registered")
    SELECTORS[name] = fn
    return fn
  return wrap


def get_selector(name: str) -> Callable:
  if name not in SELECTORS:
    raise KeyError(f"unknown selector {name!r}; known: {sorted(SELECTORS)}")
  return SELECTORS[name]
