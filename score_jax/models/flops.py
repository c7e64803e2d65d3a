"""Analytic FLOPs (2 per multiply-accumulate) of the decoder's prefill and of the vision side, and XLA's
own count of a jitted function (`xla_flops`) to check them against.

Prefill: C(N) = a*N + b*N^2 with a = 2 * L * (q,k,v,o projections + SwiGLU MLP) per token and
b = 2 * L * d for causal attention scores and values (QK^T and AV over the lower triangle).
The LM head is applied at the answer position only and is left out.
Vision side per frame: `vision_flops_per_frame` (SigLIP tower, projector, pooling).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.extend.core as jex_core

from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config
from score_jax.models.siglip import layers_for_feature


def linear_flops_per_token(cfg: Qwen2Config) -> float:
  d, hd = cfg.hidden_size, cfg.head_size
  proj = d * cfg.num_attention_heads * hd * 2 + d * cfg.num_key_value_heads * hd * 2
  mlp = 3 * d * cfg.intermediate_size
  return 2.0 * cfg.num_hidden_layers * (proj + mlp)


def prefill_flops(cfg: Qwen2Config, num_tokens: int) -> float:
  attn = 2.0 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_size * num_tokens ** 2
  return linear_flops_per_token(cfg) * num_tokens + attn


def vision_flops_per_frame(cfg: LlavaOnevisionConfig) -> float:
  """Analytic FLOPs of one frame through the vision side: SigLIP tower + projector + 2x2 bilinear pooling.

  With P = (image_size / patch_size)^2 patches, patch p, channels C, SigLIP width d_v, MLP width I, the
  L = `layers_for_feature` layers that run, and the decoder width d:
    patch embedding  2 * P * (p^2 C) * d_v                          (the stride-p convolution)
    each layer       2 * P * (4 d_v^2 + 2 d_v I) + 4 * P^2 * d_v     (q, k, v, o; fc1, fc2; QK^T and AV, full)
    projector        2 * P * (d_v d + d^2)                          (linear_1, linear_2 on every patch)
    pooling          2 * d * (o s^2 + o^2 s)                        (side s -> o = ceil(s/2), rows then columns)
  Matmuls only (2 FLOPs per multiply-accumulate): layer norms, GELU, softmax and the residual adds are
  left out, as in `prefill_flops`.
  """
  v, d = cfg.vision, cfg.text.hidden_size
  p_count, side = v.grid_size ** 2, v.grid_size
  out = (side + 1) // 2
  layers = layers_for_feature(v, cfg.vision_feature_layer)
  patch = 2.0 * p_count * v.patch_size ** 2 * v.num_channels * v.hidden_size
  layer = 2.0 * p_count * (4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size) \
      + 4.0 * p_count ** 2 * v.hidden_size
  projector = 2.0 * p_count * (v.hidden_size * d + d * d)
  pooling = 2.0 * d * (out * side * side + out * out * side)
  return patch + layers * layer + projector + pooling


def vision_flops(cfg: LlavaOnevisionConfig, num_frames: int) -> float:
  return num_frames * vision_flops_per_frame(cfg)


def _unrolled(jaxpr):
  """The jaxpr (open or closed) with every `scan` fully unrolled, nested ones included."""
  if isinstance(jaxpr, jex_core.ClosedJaxpr):
    return jaxpr.replace(jaxpr=_unrolled(jaxpr.jaxpr))
  eqns = []
  for eqn in jaxpr.eqns:
    params = {k: _unrolled_param(v) for k, v in eqn.params.items()}
    if eqn.primitive.name == "scan":
      params["unroll"] = max(int(params["length"]), 1)
    eqns.append(eqn.replace(params=params))
  return jaxpr.replace(eqns=eqns)


def _unrolled_param(value):
  if isinstance(value, (jex_core.Jaxpr, jex_core.ClosedJaxpr)):
    return _unrolled(value)
  if isinstance(value, tuple) and value and all(isinstance(v, (jex_core.Jaxpr, jex_core.ClosedJaxpr))
                                                for v in value):
    return tuple(_unrolled(v) for v in value)
  return value


def xla_flops(fn: Callable, *abstract_args, optimized: bool = True) -> float:
  """XLA's FLOP count of `fn` for `abstract_args` (`jax.ShapeDtypeStruct` pytrees; nothing is allocated):
  `jit(fn).lower(...).compile().cost_analysis()`, or with `optimized=False` the lowered program's count
  without compiling it (before XLA's optimisations: the same matmuls, much faster for large programs).

  XLA's cost analysis counts a while loop's body once whatever its trip count, so every `scan`
  (`nn.scan` layers, `lax.map` attention blocks) is unrolled first. XLA also counts elementwise work
  (1 FLOP per element: norms, activations, softmax), which the analytic counts here leave out.
  """
  closed = jax.make_jaxpr(fn)(*abstract_args)
  lowered = jax.jit(jex_core.jaxpr_as_fun(_unrolled(closed))).lower(*jax.tree_util.tree_leaves(abstract_args))
  cost = lowered.compile().cost_analysis() if optimized else lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    return float(sum(c.get("flops", 0.0) for c in cost))
  return float(cost["flops"])
