"""Learned compression methods behind one interface, chosen by `config.method` ("score", "cacovid").

Each method module provides:
  make_policy(config) -> Flax module
  uses_question(config) -> bool: whether the policy reads question embeddings
  init_state(config, policy, tx, llm, key, mesh=None) -> TrainState
  make_train_step(config, policy, llm, tx, mesh) -> jitted step(state, batch, key, llm_params)
  keep_fn(config, policy, params) -> a `keep_policy.KeepPolicy`, or plain select(features, k) -> kept
      indices [B, k] (inference; see `keep_policy.as_keep_policy`)
"""
from __future__ import annotations

import importlib

METHODS = ("score", "cacovid")


def get_method(config):
  name = config.get("method", "score")
  if name not in METHODS:
    raise ValueError(f"config.method={name!r}; expected one of {METHODS}.")
  return importlib.import_module(f"score_jax.methods.{name}")
