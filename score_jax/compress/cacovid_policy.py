"""CaCoVID policy: question-conditioned token and frame keep logits from the LLM's input embeddings.

    [visual tokens (T*P); question tokens (L)] -> Dense(hidden) (+ learned type embedding)
      -> `num_layers` Qwen2 decoder layers (RMSNorm, RoPE, SwiGLU), NON-causal, padded question keys masked
      -> shared RMSNorm -> token head on every visual token, frame head on each frame's mean hidden state.

Heads (as the authors' code): Dense halving the width `halvings` times with SiLU (h -> h/2 -> ... -> h/16)
then Dense(2); the keep logit is out[1] - out[0], i.e. a two-way keep/drop categorical whose keep
probability is sigmoid(logit) (that is what the per-token PPO in `rl/ppo.py` uses), while the samplers use
the softmax of the same logits within a frame. Positions: visual token i at RoPE position i, question token j
at T*P + j (the question follows the video in the prompt). CaCoVID uses the LLM width (hidden = d, no
projection); `hidden=None` does the same. The layers are Qwen2's (same parameter tree as
`Qwen2DecoderLayer`) with memory-efficient attention: query blocks recomputed in the backward pass
(`blocked_attention`), so no [B, heads, T*P + L, T*P + L] score tensor is ever whole.
`norm_inputs` (not the authors'; off by default) RMS-normalises the visual tokens and the question
embeddings separately before they meet: the LLM's visual tokens can be far larger than its word
embeddings (about 40 against 1.4 in norm on the embedded model), which leaves the question a small
share of every attention input at initialisation. `question_attention` (not the authors'; off by default)
adds to each token's keep logit what the question attends to in the first layer: the attention logits of
the question tokens onto the visual tokens, weighed per head by a learned gate over the question tokens
(`question_attention_logit`). With the first layer warm-started from the frozen LLM's first decoder layer
(`methods.cacovid.warm_start`), that attention is the LLM's own lookup of the object a question names.
`use_residual` (not the authors'; off by default)
adds SCORE's inter-frame residual of each visual token, layer-normed and projected, to its input: the
ablation that asks whether the state or the objective is what separates the two methods.
Reference: "CaCoVID: contribution-aware token compression for video LLMs" (arXiv 2602.01649).
"""
from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from score_jax.compress.blocked_attention import DEFAULT_BLOCK, blocked_attention
from score_jax.compress.surprise import temporal_residual
from score_jax.models.configs import Qwen2Config
from score_jax.models.qwen2 import Qwen2MLP, RMSNorm
from score_jax.models.rope import apply_rope, rope_cos_sin


class CaCoVIDLogits(NamedTuple):
  token: jnp.ndarray  # float32 [B, T, P] keep logits
  frame: jnp.ndarray  # float32 [B, T] keep logits


class PolicySelfAttention(nn.Module):
  """Qwen2's attention projections (q/k/v_proj with bias, o_proj without) and RoPE, blocked compute.
  With `n_visual` > 0 also returns the attention logits of the tokens after the first `n_visual` (the question)
  onto those (the visual tokens), [B, H, Lq, n_visual], else None."""
  cfg: Qwen2Config
  block: int = DEFAULT_BLOCK
  n_visual: int = 0

  @nn.compact
  def __call__(self, x, cos, sin, key_valid):
    cfg, (b, l, _) = self.cfg, x.shape
    hd = cfg.head_size
    q = nn.Dense(cfg.num_attention_heads * hd, name="q_proj")(x).reshape(b, l, -1, hd)
    k = nn.Dense(cfg.num_key_value_heads * hd, name="k_proj")(x).reshape(b, l, -1, hd)
    v = nn.Dense(cfg.num_key_value_heads * hd, name="v_proj")(x).reshape(b, l, -1, hd)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    out = blocked_attention(q, k, v, key_valid, self.block).reshape(b, l, -1)
    onto_visual = None
    if self.n_visual:
      n, group = self.n_visual, q.shape[2] // k.shape[2]
      kv = jnp.repeat(k[:, :n], group, axis=2)  # [B, n, H, hd]
      onto_visual = jnp.einsum("bjhd,bihd->bhji", q[:, n:], kv) / jnp.sqrt(jnp.float32(hd))
    return nn.Dense(cfg.hidden_size, use_bias=False, name="o_proj")(out), onto_visual


class PolicyDecoderLayer(nn.Module):
  """A non-causal Qwen2 decoder layer (parameters named as `Qwen2DecoderLayer`'s) over x [B, L, h]
  with padded keys masked out (`key_valid` [B, L]), attention computed in blocks; returns (x, the question's
  attention logits onto the visual tokens when `n_visual` > 0, else None)."""
  cfg: Qwen2Config
  block: int = DEFAULT_BLOCK
  n_visual: int = 0

  @nn.compact
  def __call__(self, x, cos, sin, key_valid):
    eps = self.cfg.rms_norm_eps
    h = RMSNorm(eps, name="input_layernorm")(x)
    attn, onto_visual = PolicySelfAttention(self.cfg, self.block, self.n_visual, name="self_attn")(
        h, cos, sin, key_valid)
    x = x + attn
    h = RMSNorm(eps, name="post_attention_layernorm")(x)
    return x + Qwen2MLP(self.cfg, name="mlp")(h), onto_visual


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
  intermediate_size: int | None = None  # the MLP width; None: mlp_ratio * width (an LLM's may be no multiple)
  halvings: int = 4
  rope_theta: float = 1_000_000.0
  rms_norm_eps: float = 1e-6
  use_residual: bool = False
  norm_inputs: bool = False
  question_attention: bool = False

  def layer_config(self, width: int) -> Qwen2Config:
    if width % self.num_heads or (width // self.num_heads) % 2:
      raise ValueError(f"hidden={width} must split into {self.num_heads} heads of even size.")
    kv = self.num_kv_heads or self.num_heads
    if self.num_heads % kv:
      raise ValueError(f"num_heads={self.num_heads} must be a multiple of num_kv_heads={kv}.")
    return Qwen2Config(vocab_size=1, hidden_size=width,
                       intermediate_size=self.intermediate_size or self.mlp_ratio * width,
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
    if self.use_residual and self.hidden is None:
      raise ValueError("CaCoVIDPolicy(use_residual=True) needs a `hidden` width (the residual is projected to it).")
    lq = question.shape[1]
    if question_mask is None:
      question_mask = jnp.ones((b, lq), bool)
    n = t * p
    width = d if self.hidden is None else self.hidden
    cfg = self.layer_config(width)
    vis_in, q_in = visual.astype(jnp.float32), question.astype(jnp.float32)
    if self.norm_inputs:
      vis_in = RMSNorm(self.rms_norm_eps, name="visual_in_norm")(vis_in)
      q_in = RMSNorm(self.rms_norm_eps, name="question_in_norm")(q_in)
    x = jnp.concatenate([vis_in.reshape(b, n, d), q_in], axis=1)
    if self.hidden is not None:
      x = nn.Dense(width, name="in_proj")(x)
    if self.use_residual:
      r = nn.LayerNorm(name="ln_residual")(temporal_residual(visual).reshape(b, n, d))
      x = x + jnp.pad(nn.Dense(width, name="residual_proj")(r), ((0, 0), (0, lq), (0, 0)))
    type_embed = self.param("type_embed", nn.initializers.normal(0.02), (2, width))
    x = x + jnp.concatenate([jnp.broadcast_to(type_embed[0], (n, width)),
                             jnp.broadcast_to(type_embed[1], (lq, width))], axis=0)[None]
    valid = jnp.concatenate([jnp.ones((b, n), bool), question_mask.astype(bool)], axis=1)
    positions = jnp.broadcast_to(jnp.arange(n + lq), (b, n + lq))
    cos, sin = rope_cos_sin(positions, cfg.head_size, cfg.rope_theta)
    onto_visual = None
    for i in range(self.num_layers):
      # Padded question tokens are masked as keys; as queries their rows never reach a visual output.
      x, attn = PolicyDecoderLayer(cfg, n_visual=n if (self.question_attention and i == 0) else 0,
                                   name=f"layer_{i}")(x, cos, sin, valid)
      if i == 0:
        onto_visual = attn
    vis = x[:, :n].reshape(b, t, p, width)
    norm = RMSNorm(self.rms_norm_eps, name="norm")
    token = HalvingHead(width, self.halvings, name="token_head")(norm(vis))
    if self.question_attention:
      token = token + self.question_attention_logit(onto_visual, x[:, n:], question_mask).reshape(b, t, p)
    frame = HalvingHead(width, self.halvings, name="frame_head")(norm(jnp.mean(vis, axis=2)))
    return CaCoVIDLogits(token.astype(jnp.float32), frame.astype(jnp.float32))

  def question_attention_logit(self, onto_visual: jnp.ndarray, question_hidden: jnp.ndarray,
                               question_mask: jnp.ndarray) -> jnp.ndarray:
    """[B, N] keep-logit term from the first layer's attention of the question onto the visual tokens
    (`onto_visual` [B, H, Lq, N] logits): per head, a softmax gate over the valid question tokens (read from
    their hidden states, zero-initialised: the mean at first) weighs each question token's log-softmax over
    the visual tokens; the per-head sums, centred over the video, are mixed by a Dense(1) (initialised to
    the mean over heads)."""
    heads = onto_visual.shape[1]
    gate = nn.Dense(heads, kernel_init=nn.initializers.zeros, name="question_gate")(question_hidden)  # [B, Lq, H]
    gate = jax.nn.softmax(jnp.where(question_mask[..., None], gate, -1e30), axis=1)
    per_head = jnp.einsum("bjh,bhji->bih", gate, jax.nn.log_softmax(onto_visual, axis=-1))  # [B, N, H]
    per_head = per_head - jnp.mean(per_head, axis=1, keepdims=True)
    mix = nn.Dense(1, kernel_init=nn.initializers.constant(1.0 / heads), name="question_attention_mix")
    return mix(per_head)[..., 0]
