"""CaCoVID policy: question-conditioned token and frame keep logits from the LLM's input embeddings.

    [visual tokens (T*P); question tokens (L)] -> Dense(hidden) (+ learned type embedding)
      -> `num_layers` Qwen2 decoder layers (RMSNorm, RoPE, SwiGLU), NON-causal, padded question keys masked
      -> shared RMSNorm -> token head on every visual token, frame head on each frame's mean hidden state.

Heads (as the authors' code): Dense halving the width `halvings` times with SiLU (h -> h/2 -> ... -> h/16)
then Dense(2); the keep logit is out[1] - out[0], i.e. a two-way keep/drop categorical whose keep
probability is sigmoid(logit) (that is what the per-token PPO in `rl/ppo.py` uses), while the samplers use
the softmax of the same logits within a frame. Positions: visual token i at RoPE position i, question token j
at T*P + j (the question follows the video in the prompt). CaCoVID uses the LLM width (hidden = d, no
projection); `hidden=None` does the same. Self-attention materialises [B, heads, T*P + L, T*P + L] scores.
Reference: "CaCoVID: contribution-aware token compression for video LLMs" (arXiv 2602.01649).
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax.numpy as jnp

from score_jax.models.attention import attention_mask
from score_jax.models.configs import Qwen2Config
from score_jax.models.qwen2 import Qwen2DecoderLayer, RMSNorm
from score_jax.models.rope import rope_cos_sin


class CaCoVIDLogits(NamedTuple):
  token: jnp.ndarray  # float32 [B, T, P] keep logits
  frame: jnp.ndarray  # float32 [B, T] keep logits


class HalvingHead(nn.Module):
  """Dense(h/2) SiLU Dense(h/4) SiLU ... Dense(2) -> keep logit out[1] - out[0]."""
  width: int
  halvings: int = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    w = self.width
    for i in range(self.halvings):
      w = max(w // 2, 1)
      x = nn.silu(nn.Dense(w, name=f"fc{i}")(x))
    out = nn.Dense(2, name="out")(x)
    return out[..., 1] - out[..., 0]


class CaCoVIDPolicy(nn.Module):
  """(visual [B, T, P, d], question [B, L, d], question_mask [B, L]) -> CaCoVIDLogits."""
  hidden: int | None = 256
  num_layers: int = 1
  num_heads: int = 4
  num_kv_heads: int | None = None
  mlp_ratio: int = 4
  halvings: int = 4
  rope_theta: float = 1_000_000.0
  rms_norm_eps: float = 1e-6

  def layer_config(self, width: int) -> Qwen2Config:
    if width % self.num_heads or (width // self.num_heads) % 2:
      raise ValueError(f"hidden={width} must split into {self.num_heads} heads of even size.")
    kv = self.num_kv_heads or self.num_heads
    if self.num_heads % kv:
      raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={kv}.")
    return Qwen2Config(vocab_size=1, hidden_size=width, intermediate_size=self.mlp_ratio * width,
                       num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                       num_key_value_heads=kv, rms_norm_eps=self.rms_norm_eps, rope_theta=self.rope_theta)

  @nn.compact
  def __call__(self, visual: jnp.ndarray, question: jnp.ndarray,
               question_mask: jnp.ndarray | None = None) -> CaCoVIDLogits:
    b, t, p, d = visual.shape
    if question.ndim != 3 or question.shape[0] != b or question.shape[-1] != d:
      raise ValueError(f"question must be [B={b}, L, d={d}] embeddings; got {question.shape}.")
    if self.num_layers < 1:
      raise ValueError("CaCoVIDPolicy needs num_layers >= 1 (the layer is what conditions on the question).")
    lq = question.shape[1]
    if question_mask is None:
      question_mask = jnp.ones((b, lq), bool)
    n = t * p
    width = d if self.hidden is None else self.hidden
    cfg = self.layer_config(width)
    x = jnp.concatenate([visual.reshape(b, n, d), question], axis=1).astype(jnp.float32)
    if self.hidden is not None:
      x = nn.Dense(width, name="in_proj")(x)
    type_embed = self.param("type_embed", nn.initializers.normal(0.02), (2, width))
    x = x + jnp.concatenate([jnp.broadcast_to(type_embed[0], (n, width)),
                             jnp.broadcast_to(type_embed[1], (lq, width))], axis=0)[None]
    valid = jnp.concatenate([jnp.ones((b, n), bool), question_mask.astype(bool)], axis=1)
    positions = jnp.broadcast_to(jnp.arange(n + lq), (b, n + lq))
    cos, sin = rope_cos_sin(positions, cfg.head_size, cfg.rope_theta)
    mask = attention_mask(valid, valid, causal=False)
    for i in range(self.num_layers):
      x, _ = Qwen2DecoderLayer(cfg, name=f"layer_{i}")(x, cos, sin, mask)
    vis = x[:, :n].reshape(b, t, p, width)
    norm = RMSNorm(self.rms_norm_eps, name="norm")
    token = HalvingHead(width, self.halvings, name="token_head")(norm(vis))
    frame = HalvingHead(width, self.halvings, name="frame_head")(norm(jnp.mean(vis, axis=2)))
    return CaCoVIDLogits(token.astype(jnp.float32), frame.astype(jnp.float32))
