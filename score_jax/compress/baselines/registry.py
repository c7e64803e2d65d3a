"""Name -> selector and name -> compressor registries for training-free baselines.

A selector returns kept indices [B, k]; a compressor returns a `Compressed` (tokens, positions,
validity; `score_jax/compress/compressed.py`), e.g. merged tokens. `get_compressor` serves both: a
selector comes wrapped so that it gathers what it keeps (exactly the tokens and positions it kept).
"""
from __future__ import annotations

from typing import Callable

SELECTORS: dict[str, Callable] = {}
COMPRESSORS: dict[str, Callable] = {}


def register_selector(name: str) -> Callable:
  def wrap(fn: Callable) -> Callable:
    if name in SELECTORS or name in COMPRESSORS:
      raise ValueError(f"selector {name!r} already registered")
    SELECTORS[name] = fn
    return fn
  return wrap


def register_compressor(name: str) -> Callable:
  """Registers `compress(visual [B, T, P, d], k, *, key, extras) -> Compressed` under `name`."""
  def wrap(fn: Callable) -> Callable:
    if name in SELECTORS or name in COMPRESSORS:
      raise ValueError(f"compressor {name!r} already registered")
    COMPRESSORS[name] = fn
    return fn
  return wrap


def method_names() -> list[str]:
  """Every registered baseline, selectors and compressors."""
  return sorted(set(SELECTORS) | set(COMPRESSORS))


def get_compressor(name: str) -> Callable:
  """The compressor `name`; a selector is wrapped to gather the tokens it keeps at their positions."""
  from score_jax.compress.compressed import from_selector
  if name in COMPRESSORS:
    return COMPRESSORS[name]
  if name in SELECTORS:
    return from_selector(SELECTORS[name])
  raise KeyError(f"unknown method {name!r}; known: {method_names()}")


def get_selector(name: str) -> Callable:
  if name not in SELECTORS:
    raise KeyError(f"unknown selector {name!r}; known: {sorted(SELECTORS)}")
  return SELECTORS[name]
