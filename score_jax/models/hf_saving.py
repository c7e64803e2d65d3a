"""Write our LLaVA-OneVision parameters as a Hugging Face checkpoint folder.

The inverse of `hf_loading`: the same rename table, with layouts converted back (Dense [in, out] ->
Linear [out, in], Conv [kh, kw, I, O] -> [O, I, kh, kw], stacked layers split per layer). Names follow
what `transformers.save_pretrained` writes for LLaVA-OneVision, so `transformers` loads the folder too.
The embedded default model is stored this way and read back through the real loading code.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np

from score_jax.models import sharding as shd
from score_jax.models.configs import LlavaOnevisionConfig
from score_jax.models.hf_loading import LLAVA_COMPONENTS, NameScheme, tensor_source
from score_jax.models.safetensors_io import save_safetensors

SAVE_SCHEME = NameScheme({"vision_tower": "vision_tower.", "multi_modal_projector": "multi_modal_projector.",
                          "language_model": "language_model.model."}, "language_model.", "image_newline")


def _unconvert(x: np.ndarray, transform: str) -> np.ndarray:
  if transform == "linear":
    return x.T
  if transform == "conv":
    return x.transpose(3, 2, 0, 1)
  return x


def hf_config_dict(cfg: LlavaOnevisionConfig, num_vision_layers: int) -> dict:
  v, t = cfg.vision, cfg.text
  return {
      "architectures": ["LlavaOnevisionForConditionalGeneration"],
      "model_type": "llava_onevision",
      "vision_config": {
          "model_type": "siglip_vision_model", "hidden_size": v.hidden_size,
          "intermediate_size": v.intermediate_size, "num_hidden_layers": num_vision_layers,
          "num_attention_heads": v.num_attention_heads, "num_channels": v.num_channels,
          "image_size": v.image_size, "patch_size": v.patch_size, "layer_norm_eps": v.layer_norm_eps,
          "hidden_act": v.hidden_act, "vision_use_head": False},
      "text_config": {
          "model_type": "qwen2", "vocab_size": t.vocab_size, "hidden_size": t.hidden_size,
          "intermediate_size": t.intermediate_size, "num_hidden_layers": t.num_hidden_layers,
          "num_attention_heads": t.num_attention_heads, "num_key_value_heads": t.num_key_value_heads,
          "rms_norm_eps": t.rms_norm_eps, "rope_theta": t.rope_theta, "hidden_act": "silu",
          "tie_word_embeddings": t.tie_word_embeddings, "max_position_embeddings": 32768},
      "image_token_index": cfg.image_token_id,
      "video_token_index": cfg.video_token_id,
      "vision_feature_layer": -1,
      "vision_feature_select_strategy": "full",
      "projector_hidden_act": cfg.projector_hidden_act,
      "multimodal_projector_bias": cfg.multimodal_projector_bias,
      "tie_word_embeddings": t.tie_word_embeddings,
  }


def save_llava_onevision(folder: str, cfg: LlavaOnevisionConfig, params, tokenizer=None) -> None:
  """config.json + model.safetensors (+ tokenizer files) for `params` of `LlavaOnevision(cfg)`."""
  os.makedirs(folder, exist_ok=True)
  tensors = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    src = tensor_source(shd.path_str(path), LLAVA_COMPONENTS, SAVE_SCHEME)
    x = np.asarray(jax.device_get(leaf))
    if src.stacked:
      for i in range(x.shape[0]):
        tensors[src.name.format(i=i)] = _unconvert(x[i], src.transform)
    else:
      tensors[src.name] = _unconvert(x, src.transform)
  num_vision_layers = jax.tree_util.tree_leaves(params["vision_tower"].get("layers", {"x": np.zeros((0,))}))[0].shape[0]
  save_safetensors(tensors, os.path.join(folder, "model.safetensors"))
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(hf_config_dict(cfg, num_vision_layers), f, indent=2)
  if tokenizer is not None:
    tokenizer.save_pretrained(folder)
