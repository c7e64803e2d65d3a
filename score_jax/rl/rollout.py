"""Group rollouts: the frozen video LLM answers once per sampled keep-mask, in one batched prefill.

The prefill is mapped over the group axis (`jax.vmap`, the visual tokens and the text unmapped): each
(sample, mask) gathers its k kept tokens straight from its sample's [N, d] tokens, so the videos are
never copied G times (no [B * G, N, d] array), and each prompt is embedded once per sample. A rollout
may also be what a compressor hands the LLM: a `Compressed` whose leaves are [B, G, k, ...] (merged tokens
with their position ids), prefilled the same way.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.compress.compressed import Compressed
from score_jax.models import prefill
from score_jax.rl.sampling import MaskSample


def _repeat(x: jnp.ndarray, g: int) -> jnp.ndarray:
  """[B, ...] -> [B * G, ...] (each sample repeated G times, group-major within a sample)."""
  return jnp.repeat(x, g, axis=0)


def rollout_option_logprobs(module, llm_params, visual: jnp.ndarray, masks: MaskSample, batch: dict,
                            option_ids: jnp.ndarray, position_mode: str = "original") -> jnp.ndarray:
  """Option log-probs [B, G, n_options] of the frozen LLM, one prefill per (sample, mask).

  visual: [B, N, d] visual tokens; masks: leaves [B, G, k] (static k), or a `Compressed` with leaves
  [B, G, k, ...] (then `visual` is not read). Options are scored by `batch["option_ids"]` [B, n] when the
  batch has them, else by `option_ids` [n] (the letters).
  """
  text = (batch["prefix"], batch["suffix"], batch["suffix_len"])
  if isinstance(masks, Compressed):
    b, g = masks.positions.shape[:2]
    logits = jax.vmap(lambda video: prefill.prefill_logits(module, llm_params, video, None, *text,
                                                           position_mode=position_mode),
                      in_axes=1, out_axes=1)(masks).reshape(b * g, -1)
  else:
    b, g = masks.indices.shape[:2]

    def one_mask(indices, valid):  # [B, k] each: one mask per sample
      return prefill.prefill_logits(module, llm_params, visual, indices, *text, keep_valid=valid,
                                    position_mode=position_mode)
    logits = jax.vmap(one_mask, in_axes=1, out_axes=1)(masks.indices, masks.valid).reshape(b * g, -1)
  ids = prefill.choice_ids(batch, option_ids)
  if ids.ndim == 2:  # per-sample ids: one row per rollout
    ids = _repeat(ids, g)
  n_opt = batch.get("num_options")
  return prefill.option_logprobs(logits, ids, None if n_opt is None else _repeat(n_opt, g)).reshape(b, g, -1)
