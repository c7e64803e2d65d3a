"""SigLIP vision tower (patch embedding, pre-LN transformer encoder) as a Flax Linen module.

`num_layers` may be smaller than the checkpoint's depth: LLaVA-OneVision reads the hidden state of
`vision_feature_layer`, so the layers after it are never run (nor loaded).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from score_jax.models.attention import DEFAULT_IMPLEMENTATION, multihead_attention, resolve_implementation
from score_jax.models.configs import SiglipVisionConfig

_ACTIVATIONS = {
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * nn.sigmoid(1.702 * x),
}


def layers_for_feature(cfg: SiglipVisionConfig, feature_layer: int) -> int:
  """Number of encoder layers to run so the output is `hidden_states[feature_layer]` (HF indexing)."""
  n = cfg.num_hidden_layers + 1 + feature_layer if feature_layer < 0 else feature_layer
  if not 0 <= n <= cfg.num_hidden_layers:
    raise ValueError(f"vision_feature_layer={feature_layer} is out of range for "
                     f"{cfg.num_hidden_layers} SigLIP layers.")
  return n


class SiglipEncoderLayer(nn.Module):
  cfg: SiglipVisionConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention: str = "xla"  # a resolved implementation (see `score_jax.models.attention`)

  @nn.compact
  def __call__(self, x, _):
    cfg = self.cfg
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    b, l, d = x.shape
    hd = d // cfg.num_attention_heads
    h = nn.LayerNorm(cfg.layer_norm_eps, name="layer_norm1", **kw)(x)
    q = nn.Dense(d, name="q_proj", **kw)(h).reshape(b, l, -1, hd)
    k = nn.Dense(d, name="k_proj", **kw)(h).reshape(b, l, -1, hd)
    v = nn.Dense(d, name="v_proj", **kw)(h).reshape(b, l, -1, hd)
    attn = multihead_attention(q, k, v, None, self.attention).reshape(b, l, d)
    x = x + nn.Dense(d, name="out_proj", **kw)(attn)
    h = nn.LayerNorm(cfg.layer_norm_eps, name="layer_norm2", **kw)(x)
    h = nn.Dense(cfg.intermediate_size, name="fc1", **kw)(h)
    h = nn.Dense(d, name="fc2", **kw)(_ACTIVATIONS[cfg.hidden_act](h))
    return x + h, None


class SiglipVisionTower(nn.Module):
  """Images [B, H, W, C] (already normalised) -> patch features [B, (H/p)*(W/p), d]."""
  cfg: SiglipVisionConfig
  num_layers: int | None = None
  use_post_layernorm: bool = False
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention: str = DEFAULT_IMPLEMENTATION  # see `score_jax.models.attention` (no mask: XLA or cuDNN)

  @nn.compact
  def __call__(self, images):
    cfg = self.cfg
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if images.shape[-3:] != (cfg.image_size, cfg.image_size, cfg.num_channels):
      raise ValueError(f"SigLIP expects images of shape [..., {cfg.image_size}, {cfg.image_size}, "
                       f"{cfg.num_channels}], got {images.shape}.")
    p = cfg.patch_size
    x = nn.Conv(cfg.hidden_size, (p, p), strides=(p, p), padding="VALID", name="patch_embedding",
                **kw)(images.astype(self.dtype))
    x = x.reshape(x.shape[0], -1, cfg.hidden_size)
    num_patches = cfg.grid_size ** 2
    pos = nn.Embed(num_patches, cfg.hidden_size, name="position_embedding", **kw)(jnp.arange(num_patches))
    x = x + pos[None]
    n = cfg.num_hidden_layers if self.num_layers is None else self.num_layers
    impl = resolve_implementation(self.attention, self.dtype, cfg.hidden_size // cfg.num_attention_heads)
    if n > 0:
      x, _ = nn.scan(SiglipEncoderLayer, variable_axes={"params": 0}, split_rngs={"params": True},
                     length=n)(cfg, name="layers", attention=impl, **kw)(x, None)
    if self.use_post_layernorm:
      x = nn.LayerNorm(cfg.layer_norm_eps, name="post_layernorm", **kw)(x)
    return x


def grid_side(num_patches: int) -> int:
  side = math.isqrt(num_patches)
  if side * side != num_patches:
    raise ValueError(f"{num_patches} patches do not form a square grid.")
  return side
