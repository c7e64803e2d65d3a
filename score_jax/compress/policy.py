"""SCORE policy network: per-token keep logits from the surprise-augmented state.

state[t, p] = concat[LN(x), LN(residual) (use_residual), surprise scalar (use_surprise_scalar),
                     log1p of the running max of the surprise over frames 0..t (use_surprise_memory)]
  -> Dense(hidden) -> GELU -> + frame-index and spatial-position embeddings
  -> num_layers pre-LN transformer blocks over all T*P tokens
     (num_layers=0: a single residual per-token MLP block, no attention)
  -> LayerNorm -> Dense(1) = keep logit.

With `query_conditioned=True` each block also cross-attends to projected question embeddings.
With `count_levels=L > 0` (adaptive SCORE's `sized_topk` sampler) a count head reads the mean and the
max over tokens of the final hidden states and returns L logits over budget levels next to the keep
logits; its kernel starts at zero, so the first levels are drawn uniformly.
Attention runs in query blocks recomputed in the backward pass (`blocked_attention`), so no
[B, heads, T*P, T*P] score tensor (0.6 GB per sample at 32x196 tokens and 4 heads) is ever whole;
its parameters are named as `nn.MultiHeadDotProductAttention`'s (query/key/value/out), so checkpoints
of the earlier module load unchanged.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from score_jax.compress.blocked_attention import DEFAULT_BLOCK, blocked_attention
from score_jax.compress.surprise import surprise_memory, surprise_state


class _MLP(nn.Module):
  hidden: int
  mlp_ratio: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, deterministic: bool = True) -> jnp.ndarray:
    h = nn.gelu(nn.Dense(self.hidden * self.mlp_ratio, name="fc1")(x))
    h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
    return nn.Dense(self.hidden, name="fc2")(h)


class PolicyAttention(nn.Module):
  """Multi-head attention with `nn.MultiHeadDotProductAttention`'s parameters (query, key, value: [in,
  heads, head_dim] + bias; out: [heads, head_dim, features] + bias) and memory-efficient blocked compute.
  Dropout (rate `dropout`) acts on its output, not on the attention weights."""
  num_heads: int
  features: int
  dropout: float = 0.0
  block: int = DEFAULT_BLOCK

  @nn.compact
  def __call__(self, x: jnp.ndarray, context: jnp.ndarray, key_valid: jnp.ndarray | None = None,
               deterministic: bool = True) -> jnp.ndarray:
    if self.features % self.num_heads:
      raise ValueError(f"hidden={self.features} must be divisible by num_heads={self.num_heads}.")
    proj = lambda name: nn.DenseGeneral((self.num_heads, self.features // self.num_heads), name=name)
    q, k, v = proj("query")(x), proj("key")(context), proj("value")(context)
    h = blocked_attention(q, k, v, key_valid, self.block)
    h = nn.DenseGeneral(self.features, axis=(-2, -1), name="out")(h)
    return nn.Dropout(self.dropout)(h, deterministic=deterministic)


class PolicyBlock(nn.Module):
  """Pre-LN block: self-attention [+ cross-attention to the question] + MLP."""
  hidden: int
  num_heads: int
  mlp_ratio: int = 4
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x: jnp.ndarray, query: jnp.ndarray | None = None,
               query_mask: jnp.ndarray | None = None, deterministic: bool = True) -> jnp.ndarray:
    attn = lambda name: PolicyAttention(self.num_heads, self.hidden, self.dropout, name=name)
    h = nn.LayerNorm(name="ln_self")(x)
    x = x + attn("self_attn")(h, h, None, deterministic)
    if query is not None:
      h = nn.LayerNorm(name="ln_cross")(x)
      if query_mask is None:
        query_mask = jnp.ones(query.shape[:2], bool)
      out = attn("cross_attn")(h, query, query_mask, deterministic)
      x = x + out * jnp.any(query_mask, axis=-1)[:, None, None]  # empty question: no update
    h = nn.LayerNorm(name="ln_mlp")(x)
    return x + _MLP(self.hidden, self.mlp_ratio, self.dropout, name="mlp")(h, deterministic)


class ScorePolicy(nn.Module):
  """Lightweight keep-logit network: tokens [B, T, P, d] -> float32 logits [B, T, P]."""
  hidden: int = 128
  num_layers: int = 1
  num_heads: int = 4
  mlp_ratio: int = 4
  use_residual: bool = True
  use_surprise_scalar: bool = True
  use_surprise_memory: bool = False
  add_frame_embed: bool = True
  add_pos_embed: bool = True
  max_frames: int = 64
  max_positions: int = 1024
  first_frame: str = "zero"
  query_conditioned: bool = False
  dropout: float = 0.0
  keep_bias: float = 0.0  # initial bias of the keep logit: logit(target retention) for keep/drop sampling
  count_levels: int = 0   # > 0: also return count logits [B, L] (see the module docstring)

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, question: jnp.ndarray | None = None,
               question_mask: jnp.ndarray | None = None, deterministic: bool = True) -> jnp.ndarray:
    b, t, p, _ = tokens.shape
    if self.query_conditioned and (question is None or self.num_layers == 0):
      raise ValueError("query_conditioned=True needs `question` [B, Lq, dq] and num_layers >= 1")
    st = surprise_state(tokens, self.first_frame)
    feats = [nn.LayerNorm(name="ln_tokens")(tokens.astype(jnp.float32))]
    if self.use_residual:
      feats.append(nn.LayerNorm(name="ln_residual")(st.residual))
    if self.use_surprise_scalar:
      feats.append(st.surprise[..., None])
    if self.use_surprise_memory:
      feats.append(jnp.log1p(surprise_memory(st.surprise))[..., None])
    h = nn.gelu(nn.Dense(self.hidden, name="in_proj")(jnp.concatenate(feats, axis=-1)))
    init = nn.initializers.normal(0.02)
    if self.add_frame_embed:
      if t > self.max_frames:
        raise ValueError(f"{t} frames > max_frames={self.max_frames}")
      h = h + self.param("frame_embed", init, (self.max_frames, self.hidden))[:t][None, :, None]
    if self.add_pos_embed:
      if p > self.max_positions:
        raise ValueError(f"{p} tokens per frame > max_positions={self.max_positions}")
      h = h + self.param("pos_embed", init, (self.max_positions, self.hidden))[:p][None, None]
    h = h.reshape(b, t * p, self.hidden)

    q = None
    if self.query_conditioned:
      q = nn.LayerNorm(name="ln_q")(question.astype(jnp.float32))
      q = nn.Dense(self.hidden, name="q_proj")(q)
    for i in range(self.num_layers):
      h = PolicyBlock(self.hidden, self.num_heads, self.mlp_ratio, self.dropout, name=f"block_{i}")(
          h, q, question_mask, deterministic)
    if self.num_layers == 0:  # per-token MLP only: one residual MLP block, no attention
      mlp = _MLP(self.hidden, self.mlp_ratio, self.dropout, name="mlp")
      h = h + mlp(nn.LayerNorm(name="ln_mlp")(h), deterministic)
    h = nn.LayerNorm(name="ln_out")(h)
    logits = nn.Dense(1, name="head", bias_init=nn.initializers.constant(self.keep_bias))(h)[..., 0]
    logits = logits.reshape(b, t, p).astype(jnp.float32)
    if not self.count_levels:
      return logits
    pooled = jnp.concatenate([jnp.mean(h, axis=1), jnp.max(h, axis=1)], axis=-1)
    count = nn.Dense(self.count_levels, name="count_head", kernel_init=nn.initializers.zeros)(pooled)
    return logits, count.astype(jnp.float32)


def policy_param_count(params) -> int:
  """Total number of scalars in a parameter pytree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
