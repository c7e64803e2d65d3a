"""A tiny random LLaVA-OneVision checkpoint folder written with `transformers`.

What the "bring your own" notebook (when no real checkpoint is given) and the answer-command tests use:
`save_pretrained` of a random `LlavaOnevisionForConditionalGeneration` (64x64 frames, 8-pixel patches: 16
tokens per frame after 2x2 pooling, like the embedded model) with the embedded world's word tokenizer, so
generated-world questions tokenise. Needs `torch` (CPU build) and `transformers`.
"""
from __future__ import annotations

import os

IMAGE_SIZE = 64


def write_tiny_llava(folder: str, seed: int = 0, hidden_size: int = 64) -> str:
  """Writes config.json, model.safetensors and the tokenizer files to `folder`; returns it. The decoder's
  `hidden_size` defaults to the embedded model's, so policies trained for either fit both."""
  from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration
  from score_jax.embedded.world_text import WorldText
  from score_jax.testing import hf_reference as ref
  text = WorldText.create()
  image_id, video_id = text.special_ids()
  qwen = ref.tiny_qwen2_config(vocab_size=len(text.tokenizer), hidden_size=hidden_size,
                               intermediate_size=2 * hidden_size, num_attention_heads=hidden_size // 16,
                               num_key_value_heads=hidden_size // 32)
  siglip = ref.tiny_siglip_config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  image_size=IMAGE_SIZE, patch_size=8)
  config = LlavaOnevisionConfig(vision_config=siglip.to_dict(), text_config=qwen.to_dict(),
                                image_token_index=image_id, video_token_index=video_id, vision_feature_layer=-1)
  os.makedirs(folder, exist_ok=True)
  ref.save_random_model(LlavaOnevisionForConditionalGeneration, config, folder, seed)
  text.tokenizer.save_pretrained(folder)
  return folder

