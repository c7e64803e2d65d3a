"""Shape of the embedded video LLM: the LLaVA-OneVision architecture in a tiny configuration.

Frames are 64x64; SigLIP patches of 8 px give an 8x8 grid, pooled 2x2 to 4x4 = 16 visual tokens per
frame (one token per 16x16-pixel cell), 128 tokens for an 8-frame video.
"""
from __future__ import annotations

from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig


def embedded_config(vocab_size: int, image_token_id: int, video_token_id: int,
                    image_size: int = 64) -> LlavaOnevisionConfig:
  return LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=1, num_attention_heads=3,
                                image_size=image_size, patch_size=8),
      text=Qwen2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0),
      image_token_id=image_token_id, video_token_id=video_token_id)
