"""Builds tiny random Hugging Face (PyTorch) models and saves them as checkpoint folders.

Used by the parity tests; needs `torch` (CPU build) and `transformers`. Nothing is downloaded.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tiny_qwen2_config(**overrides):
  from transformers import Qwen2Config
  kw = dict(vocab_size=128, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=False)
  kw.update(overrides)
  return Qwen2Config(**kw)


def tiny_siglip_config(**overrides):
  from transformers import SiglipVisionConfig
  kw = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            image_size=28, patch_size=4)
  kw.update(overrides)
  return SiglipVisionConfig(**kw)


def tiny_llava_config(vision_feature_layer: int = -1, text=None, vision=None):
  from transformers import LlavaOnevisionConfig
  text = text or tiny_qwen2_config()
  vision = vision or tiny_siglip_config()
  return LlavaOnevisionConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                              image_token_index=text.vocab_size - 2, video_token_index=text.vocab_size - 1,
                              vision_feature_layer=vision_feature_layer)


def save_random_model(model_cls, config, folder: str, seed: int = 0):
  """Random-initialised `model_cls(config)` saved with `save_pretrained`; returns the torch model."""
  import torch
  torch.manual_seed(seed)
  model = model_cls(config).eval()
  with torch.no_grad():  # HF initialises some tensors (norms, biases) to constants; randomise all.
    for p in model.parameters():
      p.add_(0.05 * torch.randn_like(p))
  model.save_pretrained(folder)
  return model
