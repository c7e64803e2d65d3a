"""Group rollouts: the frozen video LLM answers once per sampled keep-mask, in one batched prefill."""
from __future__ import annotations

import jax.numpy as jnp

from score_jax.models import prefill
from score_jax.rl.sampling import MaskSample


def _repeat(x: jnp.ndarray, g: int) -> jnp.ndarray:
  """[B, ...] -> [B * G, ...] (each sample repeated G times, group-major within a sample)."""
  return jnp.repeat(x, g, axis=0)


def rollout_option_logprobs(module, llm_params, visual: jnp.ndarray, masks: MaskSample, batch: dict,
                            option_ids: jnp.ndarray, position_mode: str = "original") -> jnp.ndarray:
  """Option log-probs [B, G, n_options] of the frozen LLM, one prefill per (sample, mask).

  visual: [B, N, d] visual tokens; masks: leaves [B, G, k] (static k). Options are scored by
  `batch["option_ids"]` [B, n] when the batch has them, else by `option_ids` [n] (the letters).
  """
  b, g, k = masks.indices.shape
  logits = prefill.prefill_logits(
      module, llm_params, _repeat(visual, g), masks.indices.reshape(b * g, k), _repeat(batch["prefix"], g),
      _repeat(batch["suffix"], g), _repeat(batch["suffix_len"], g), keep_valid=masks.valid.reshape(b * g, k),
      position_mode=position_mode)
  ids = prefill.choice_ids(batch, option_ids)
  if ids.ndim == 2:  # per-sample ids: one row per rollout
    ids = _repeat(ids, g)
  n_opt = batch.get("num_options")
  return prefill.option_logprobs(logits, ids, None if n_opt is None else _repeat(n_opt, g)).reshape(b, g, -1)
