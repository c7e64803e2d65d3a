"""Sharded creation of the frozen LLM's parameters and the jitted, sharded prefill.

`jax.jit` with `in_shardings`/`out_shardings` over a `NamedSharding` mesh is what "pjit" means today.
The prefill is traced once per static shape (batch, number of kept tokens, text lengths), i.e. once
per retention ratio; `compile_count` reads the jit cache so tests and benchmarks can check that.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from score_jax.models import prefill as prefill_lib
from score_jax.models import sharding as shd
from score_jax.models.hf_loading import abstract_params, llava_dummy_inputs
from score_jax.models.llava_onevision import LlavaOnevision


def init_llava_params(module: LlavaOnevision, mesh: Mesh, rng: jax.Array):
  """Random parameters created directly in their shardings (never whole on one device)."""
  args = llava_dummy_inputs(module.cfg)
  shapes = abstract_params(module, *args, method=LlavaOnevision.init_all)
  shardings = shd.param_shardings(shapes, mesh)

  def init(key):
    return module.init(key, *args, method=LlavaOnevision.init_all)["params"]
  return jax.jit(init, out_shardings=shardings)(rng)


def make_prefill(module: LlavaOnevision, mesh: Mesh, params, position_mode: str = "original"):
  """Jitted `f(params, visual, keep_idx, prefix_ids, suffix_ids, suffix_len) -> logits [B, V]`.

  Batch dimensions are sharded over the mesh's data and fsdp axes; parameters keep their shardings.
  """
  param_sh = jax.tree_util.tree_map(lambda x: x.sharding, params)
  batch = lambda ndim: shd.batch_sharding(mesh, ndim)
  fn = functools.partial(prefill_lib.prefill_logits, module, position_mode=position_mode)
  return jax.jit(lambda p, visual, keep_idx, prefix_ids, suffix_ids, suffix_len: fn(
      p, visual, keep_idx, prefix_ids, suffix_ids, suffix_len),
                 in_shardings=(param_sh, batch(3), batch(2), batch(2), batch(2), batch(1)),
                 out_shardings=batch(2))


def make_encode_video(module: LlavaOnevision, mesh: Mesh, params):
  """Jitted `f(params, frames [B, T, H, W, C]) -> visual tokens [B, T, P, d]`, batch-sharded."""
  param_sh = jax.tree_util.tree_map(lambda x: x.sharding, params)
  return jax.jit(functools.partial(prefill_lib.encode_video, module),
                 in_shardings=(param_sh, shd.batch_sharding(mesh, 5)),
                 out_shardings=shd.batch_sharding(mesh, 4))


def compile_count(jitted) -> int:
  """How many distinct compilations a jitted function holds in its cache."""
  return jitted._cache_size()  # pylint: disable=protected-access


def place_batch(mesh: Mesh, *arrays):
  """Puts host arrays on the mesh, batch dimension sharded."""
  return tuple(jax.device_put(jnp.asarray(a), shd.batch_sharding(mesh, jnp.ndim(a))) for a in arrays)
