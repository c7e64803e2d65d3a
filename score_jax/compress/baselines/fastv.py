"""FastV: keep the visual tokens that a shallow LLM layer's text queries attend to most.

The frozen LLM runs on the full input ([prefix][all N visual tokens][newline][suffix]) up to layer
`fastv_layer` (0-based, default 1: the attention of the 2nd layer, FastV's K = 2); that layer's
queries and keys give the attention rows of the chosen text queries, averaged over heads:
  query="last" (default, FastV's official code): the last prompt token (the answer position);
  query="question": the mean over all valid suffix tokens (question, options, assistant header).
Only those rows are built from Q and K ([B, Lq, L]), never the full [L, L] map. The score of a visual
token is the attention it receives; the top k are kept. Note the LLM prefix runs at full length, so
FastV costs more FLOPs than input-side pruning at the same k.

extras: "llm_module", "llm_params", "prefix" [B, Lp], "suffix" [B, Ls], "suffix_len" [B];
optional "fastv_layer" (int), "fastv_query" ("last" | "question").
Reference: Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024.
"""
from __future__ import annotations

import jax.numpy as jnp

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.selection import topk_indices
from score_jax.models import prefill
from score_jax.models.partial_forward import attention_rows, forward_layers, layer_query_key

QUERIES = ("last", "question")


def fastv_scores(model, params, visual: jnp.ndarray, prefix: jnp.ndarray, suffix: jnp.ndarray,
                 suffix_len: jnp.ndarray, layer: int = 1, query: str = "last") -> jnp.ndarray:
  """Attention received by each visual token at decoder layer `layer`: [B, T, P, d] -> [B, N]."""
  if query not in QUERIES:
    raise ValueError(f"fastv query={query!r}; expected one of {QUERIES}.")
  n_layers = model.cfg.text.num_hidden_layers
  if not 0 <= layer < n_layers:
    raise ValueError(f"fastv layer={layer} must be in [0, {n_layers}).")
  b = visual.shape[0]
  flat = visual.reshape(b, -1, visual.shape[-1])
  n = flat.shape[1]
  inputs = prefill.assemble_inputs(model, params, flat, prefill.all_keep_indices(b, n), prefix, suffix,
                                   suffix_len)
  hidden = forward_layers(model, params, inputs, layer)
  lp, ls = prefix.shape[1], suffix.shape[1]
  if query == "last":
    qpos = inputs.answer_index[:, None]
    qw = jnp.ones((b, 1), jnp.float32)
  else:
    qpos = jnp.broadcast_to(lp + n + 1 + jnp.arange(ls, dtype=jnp.int32), (b, ls))
    qw = (jnp.arange(ls)[None, :] < suffix_len[:, None]).astype(jnp.float32)
  q, k = layer_query_key(model, params, hidden, inputs.positions, layer)
  q = jnp.take_along_axis(q, qpos[:, :, None, None], axis=1)
  rows = attention_rows(q, k, qpos, inputs.valid)  # [B, Lq, L]
  rows = jnp.sum(rows * qw[..., None], axis=1) / jnp.maximum(jnp.sum(qw, axis=1, keepdims=True), 1.0)
  return rows[:, lp:lp + n]


@register_selector("fastv")
def fastv_select(visual, k: int, *, key=None, extras=None):
  del key
  if extras is None or "llm_module" not in extras:
    raise ValueError("fastv needs extras with llm_module, llm_params, prefix, suffix, suffix_len.")
  scores = fastv_scores(extras["llm_module"], extras["llm_params"], visual, extras["prefix"], extras["suffix"],
                        extras["suffix_len"], extras.get("fastv_layer", 1), extras.get("fastv_query", "last"))
  return topk_indices(scores, k)
