"""Shape of the embedded video LLM: the LLaVA-OneVision architecture in a tiny configuration.

Frames are 64x64; SigLIP patches of 8 px give an 8x8 grid, pooled 2x2 to 4x4 = 16 visual tokens per
frame (one token per 16x16-pixel cell), 128 tokens for an 8-frame video.
"""
from __future__ import annotations

from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig


def embedded_config(vocab_size: int, image_token_id: int, video_token_id: int, image_size: int = 64,
                    hidden_size: int = 64, num_layers: int = 3, vision_hidden_size: int = 48,
                    vision_layers: int = 1) -> LlavaOnevisionConfig:
  """Heads of 16 dims (decoder: half as many KV heads), MLPs twice as wide as the hidden size."""
  return LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=vision_hidden_size, intermediate_size=2 * vision_hidden_size,
                                num_hidden_layers=vision_layers, num_attention_heads=vision_hidden_size // 16,
                                image_size=image_size, patch_size=8),
      text=Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                       num_hidden_layers=num_layers, num_attention_heads=hidden_size // 16,
                       num_key_value_heads=max(hidden_size // 32, 1), rope_theta=10000.0),
      image_token_id=image_token_id, video_token_id=video_token_id)
