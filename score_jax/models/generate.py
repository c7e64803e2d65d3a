"""Greedy decoding with a KV cache, continuing from the compressed prefill.

The prefill is `prefill.assemble_inputs` (kept visual tokens with their position ids, in either
`position_mode`) run once through the decoder while it fills a static-size KV cache of
`prefill length + max_new_tokens` slots per layer. Then one `jax.lax.while_loop` step per new token
writes that token's keys and values into the next slot and attends to every valid slot. Right-padded
suffix slots and not-yet-written slots are invalid keys, so each sample continues from its own answer
position with position ids that continue its own sequence (answer position + 1, + 2, ...).

Shapes are static (batch, kept tokens, text lengths, `max_new_tokens`): one compilation per retention
ratio and maximum length; the decode step is traced once, not once per token. A sample stops at its
first stop token (which is kept in the output, as `transformers`' `generate` does) and gets
`pad_id` afterwards; the loop ends when every sample has stopped or `max_new_tokens` are out.
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding

from score_jax.models import prefill as prefill_lib
from score_jax.models import sharding as shd
from score_jax.models.attention import attention_mask
from score_jax.models.llava_onevision import LlavaOnevision

CACHE_AXES = (None, "batch", None, "heads", None)  # logical axes of a cache array [layers, B, S, Hkv, D]


class Cache(NamedTuple):
  k: jnp.ndarray  # [layers, B, S, Hkv, D]
  v: jnp.ndarray


class DecodeState(NamedTuple):
  step: jnp.ndarray       # [] int32: tokens emitted so far
  token: jnp.ndarray      # [B] the last emitted token (the next one to feed)
  position: jnp.ndarray   # [B] its position id
  cache: Cache
  key_valid: jnp.ndarray  # [B, S] cache slots that hold a real token
  done: jnp.ndarray       # [B] a stop token was emitted
  tokens: jnp.ndarray     # [B, max_new_tokens] the output, `pad_id` where nothing was emitted


def init_cache(model: LlavaOnevision, batch: int, length: int, sharding: NamedSharding | None = None) -> Cache:
  """Zero KV cache of `length` slots per layer, in the model's compute dtype."""
  cfg = model.cfg.text
  shape = (cfg.num_hidden_layers, batch, length, cfg.num_key_value_heads, cfg.head_size)
  zeros = jnp.zeros(shape, model.dtype)
  if sharding is not None:
    zeros = jax.lax.with_sharding_constraint(zeros, sharding)
  return Cache(zeros, zeros)


def cache_sharding(mesh: Mesh, model: LlavaOnevision, batch: int, length: int) -> NamedSharding:
  """Batch over the mesh's data axes, KV heads over `tensor` (each where it divides)."""
  cfg = model.cfg.text
  shape = (cfg.num_hidden_layers, batch, length, cfg.num_key_value_heads, cfg.head_size)
  return NamedSharding(mesh, shd.spec_for(shape, CACHE_AXES, mesh))


def _forward(model, params, embeds, positions, mask, cache, index):
  hidden, cache = model.apply({"params": params}, embeds, positions, mask, tuple(cache), index,
                              method=LlavaOnevision.with_cache)
  return hidden, Cache(*cache)


def _logits(model, params, hidden):
  return model.apply({"params": params}, hidden, method=LlavaOnevision.logits).astype(jnp.float32)


def prefill_with_cache(model: LlavaOnevision, params, inputs: prefill_lib.PrefillInputs, length: int,
                       sharding: NamedSharding | None = None):
  """(logits [B, V] at each answer position, cache of `length` slots holding the prefill, key validity
  [B, length], position id of each answer token [B])."""
  b, l = inputs.valid.shape
  if length < l:
    raise ValueError(f"KV cache length {length} is shorter than the prefill ({l} tokens).")
  mask = jnp.pad(attention_mask(inputs.valid, inputs.valid, causal=True),
                 ((0, 0), (0, 0), (0, 0), (0, length - l)))
  cache = init_cache(model, b, length, sharding)
  hidden, cache = _forward(model, params, inputs.embeds, inputs.positions, mask, cache, 0)
  last = jnp.take_along_axis(hidden, inputs.answer_index[:, None, None], axis=1)[:, 0]
  key_valid = jnp.pad(inputs.valid, ((0, 0), (0, length - l)))
  answer_pos = jnp.take_along_axis(inputs.positions, inputs.answer_index[:, None], axis=1)[:, 0]
  return _logits(model, params, last), cache, key_valid, answer_pos


def decode_step(model: LlavaOnevision, params, token, position, cache: Cache, key_valid, index):
  """Feeds `token` [B] at position ids `position` [B] into cache slot `index`: (next-token logits
  [B, V], cache, key validity)."""
  key_valid = jax.lax.dynamic_update_slice_in_dim(key_valid, jnp.ones((key_valid.shape[0], 1), bool), index,
                                                  axis=1)
  embeds = model.apply({"params": params}, token[:, None], method=LlavaOnevision.embed)
  hidden, cache = _forward(model, params, embeds, position[:, None], key_valid[:, None, None, :], cache, index)
  return _logits(model, params, hidden[:, 0]), cache, key_valid


def greedy_generate(model: LlavaOnevision, params, visual, keep_idx, prefix_ids, suffix_ids, suffix_len, *,
                    max_new_tokens: int, eos_ids: Sequence[int], pad_id: int, keep_valid=None,
                    position_mode: str = "original", sharding: NamedSharding | None = None) -> jnp.ndarray:
  """Greedy continuation [B, max_new_tokens] (int32) of each sample's prompt, given only the kept
  visual tokens (arguments as `prefill.prefill_logits`). `sharding`: of the KV cache (see
  `cache_sharding`)."""
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1.")
  if len(eos_ids) == 0:
    raise ValueError("greedy_generate needs at least one stop token id (eos_ids).")
  inputs = prefill_lib.assemble_inputs(model, params, visual, keep_idx, prefix_ids, suffix_ids, suffix_len,
                                       keep_valid, position_mode)
  b, l = inputs.valid.shape
  logits, cache, key_valid, answer_pos = prefill_with_cache(model, params, inputs, l + max_new_tokens, sharding)
  eos = jnp.asarray(eos_ids, jnp.int32)
  first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
  tokens = jnp.full((b, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(first)
  state = DecodeState(jnp.int32(1), first, answer_pos + 1, cache, key_valid, jnp.isin(first, eos), tokens)

  def cond(s: DecodeState):
    return (s.step < max_new_tokens) & ~jnp.all(s.done)

  def body(s: DecodeState):
    logits, cache, key_valid = decode_step(model, params, s.token, s.position, s.cache, s.key_valid,
                                           l + s.step - 1)
    token = jnp.where(s.done, pad_id, jnp.argmax(logits, axis=-1)).astype(jnp.int32)
    tokens = jax.lax.dynamic_update_slice_in_dim(s.tokens, token[:, None], s.step, axis=1)
    return DecodeState(s.step + 1, token, s.position + 1, cache, key_valid, s.done | jnp.isin(token, eos), tokens)

  return jax.lax.while_loop(cond, body, state).tokens


def make_generate(module: LlavaOnevision, mesh: Mesh, params, *, max_new_tokens: int, eos_ids: Sequence[int],
                  pad_id: int, position_mode: str = "original"):
  """Jitted, sharded `f(params, visual [B, N, d], keep_idx [B, k], prefix_ids, suffix_ids, suffix_len)
  -> tokens [B, max_new_tokens]`: batch dimensions over the mesh's data axes, parameters in their own
  shardings, the KV cache batch- and head-sharded (as `sharded.make_prefill`)."""
  param_sh = jax.tree_util.tree_map(lambda x: x.sharding, params)
  batch = lambda ndim: shd.batch_sharding(mesh, ndim)

  def run(p, visual, keep_idx, prefix_ids, suffix_ids, suffix_len):
    b = visual.shape[0]
    length = prefix_ids.shape[1] + keep_idx.shape[1] + 1 + suffix_ids.shape[1] + max_new_tokens
    return greedy_generate(module, p, visual, keep_idx, prefix_ids, suffix_ids, suffix_len,
                           max_new_tokens=max_new_tokens, eos_ids=tuple(eos_ids), pad_id=pad_id,
                           position_mode=position_mode, sharding=cache_sharding(mesh, module, b, length))
  return jax.jit(run, in_shardings=(param_sh, batch(3), batch(2), batch(2), batch(2), batch(1)),
                 out_shardings=batch(2))


def jit_generate(module: LlavaOnevision):
  """`greedy_generate` jitted with the maximum length and position mode static (unsharded use, e.g.
  evaluation: parameters keep whatever shardings they have); stop and pad ids are traced, so changing
  them does not recompile."""
  return jax.jit(functools.partial(greedy_generate, module),
                 static_argnames=("max_new_tokens", "position_mode", "sharding"))
