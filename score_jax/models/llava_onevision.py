"""LLaVA-OneVision video LLM: SigLIP tower -> 2-layer GELU projector -> per-frame 2x2 bilinear pooling
-> Qwen2 decoder, with one learned `image_newline` token closing every video.

The module only defines parameters and layers; the pure entry points that the rest of the library
uses (`encode_video`, `prefill`, ...) live in `score_jax.models.prefill`.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from score_jax.models.attention import DEFAULT_IMPLEMENTATION
from score_jax.models.configs import LlavaOnevisionConfig
from score_jax.models.pooling import pool_frames
from score_jax.models.qwen2 import Qwen2
from score_jax.models.siglip import SiglipVisionTower, layers_for_feature


class MultiModalProjector(nn.Module):
  out_features: int
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kw = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Dense(self.out_features, name="linear_1", **kw)(x)
    return nn.Dense(self.out_features, name="linear_2", **kw)(nn.gelu(x, approximate=False))


class LlavaOnevision(nn.Module):
  cfg: LlavaOnevisionConfig
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  attention: str = DEFAULT_IMPLEMENTATION  # `config.model.attention`: see `score_jax.models.attention`

  def setup(self):
    cfg = self.cfg
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    self.vision_tower = SiglipVisionTower(
        cfg.vision, num_layers=layers_for_feature(cfg.vision, cfg.vision_feature_layer), attention=self.attention,
        **kw)
    self.multi_modal_projector = MultiModalProjector(cfg.text.hidden_size, cfg.multimodal_projector_bias,
                                                     **kw)
    self.image_newline = self.param("image_newline", nn.initializers.normal(0.02), (cfg.text.hidden_size,),
                                    self.param_dtype)
    self.language_model = Qwen2(cfg.text, attention=self.attention, **kw)

  def encode_video(self, frames):
    """Normalised frames [B, T, H, W, C] -> visual tokens [B, T, P, d] (P = pooled tokens per frame)."""
    b, t = frames.shape[:2]
    feats = self.vision_tower(frames.reshape((b * t,) + frames.shape[2:]))
    feats = self.multi_modal_projector(feats)
    pooled = pool_frames(feats, self.cfg.vision.grid_size)
    return pooled.reshape(b, t, pooled.shape[1], pooled.shape[2])

  def newline(self):
    return self.image_newline.astype(self.dtype)

  def embed(self, ids):
    return self.language_model.embed(ids)

  def __call__(self, embeds, positions, valid=None):
    return self.language_model(embeds, positions, valid)

  def with_cache(self, embeds, positions, mask, cache=None, index=0):
    """The decoder under an explicit mask, with an optional KV cache (see `Qwen2.with_cache`)."""
    return self.language_model.with_cache(embeds, positions, mask, cache, index)

  def logits(self, hidden):
    return self.language_model.logits(hidden)

  def init_all(self, frames, ids):
    """Touches every parameter; used only by `init`."""
    tokens = self.encode_video(frames)
    b = ids.shape[0]
    x = jnp.concatenate([self.embed(ids), tokens.reshape(b, -1, tokens.shape[-1]),
                         jnp.broadcast_to(self.newline(), (b, 1, tokens.shape[-1]))], axis=1)
    return self.logits(self(x, jnp.broadcast_to(jnp.arange(x.shape[1]), x.shape[:2])))
