"""Analytic prefill FLOPs of a Qwen2-style decoder (2 FLOPs per multiply-accumulate).

C(N) = a*N + b*N^2 with a = 2 * L * (q,k,v,o projections + SwiGLU MLP) per token and
b = 2 * L * d for causal attention scores and values (QK^T and AV over the lower triangle).
The LM head is applied at the answer position only and is left out.
"""
from __future__ import annotations

from score_jax.models.configs import Qwen2Config


def linear_flops_per_token(cfg: Qwen2Config) -> float:
  d, hd = cfg.hidden_size, cfg.head_size
  proj = d * cfg.num_attention_heads * hd * 2 + d * cfg.num_key_value_heads * hd * 2
  mlp = 3 * d * cfg.intermediate_size
  return 2.0 * cfg.num_hidden_layers * (proj + mlp)


def prefill_flops(cfg: Qwen2Config, num_tokens: int) -> float:
  attn = 2.0 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_size * num_tokens ** 2
  return linear_flops_per_token(cfg) * num_tokens + attn
