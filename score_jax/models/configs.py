"""Model configurations as frozen dataclasses, readable from Hugging Face `config.json` dicts."""
from __future__ import annotations

import dataclasses
from typing import Any


class ConfigError(ValueError):
  """A model configuration that score_jax cannot run."""


@dataclasses.dataclass(frozen=True)
class Qwen2Config:
  vocab_size: int = 151936
  hidden_size: int = 896
  intermediate_size: int = 4864
  num_hidden_layers: int = 24
  num_attention_heads: int = 14
  num_key_value_heads: int = 2
  head_dim: int | None = None
  rms_norm_eps: float = 1e-6
  rope_theta: float = 1_000_000.0
  tie_word_embeddings: bool = False
  hidden_act: str = "silu"

  @property
  def head_size(self) -> int:
    return self.head_dim or self.hidden_size // self.num_attention_heads

  @classmethod
  def from_hf(cls, d: dict[str, Any]) -> "Qwen2Config":
    act = d.get("hidden_act", "silu")
    if act != "silu":
      raise ConfigError(f"Qwen2 hidden_act={act!r} is not supported (only 'silu').")
    rope = d.get("rope_scaling") or d.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type not in ("default", None):
      raise ConfigError(f"Qwen2 rope type {rope_type!r} is not supported (only 'default').")
    theta = d.get("rope_theta")
    if theta is None and isinstance(rope, dict):
      theta = rope.get("rope_theta")
    if d.get("use_sliding_window"):
      raise ConfigError("Qwen2 use_sliding_window=True is not supported.")
    return cls(
        vocab_size=d["vocab_size"],
        hidden_size=d["hidden_size"],
        intermediate_size=d["intermediate_size"],
        num_hidden_layers=d["num_hidden_layers"],
        num_attention_heads=d["num_attention_heads"],
        num_key_value_heads=d.get("num_key_value_heads", d["num_attention_heads"]),
        head_dim=d.get("head_dim"),
        rms_norm_eps=d.get("rms_norm_eps", 1e-6),
        rope_theta=float(theta if theta is not None else 10000.0),
        tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
    )


@dataclasses.dataclass(frozen=True)
class SiglipVisionConfig:
  hidden_size: int = 1152
  intermediate_size: int = 4304
  num_hidden_layers: int = 26
  num_attention_heads: int = 16
  num_channels: int = 3
  image_size: int = 384
  patch_size: int = 14
  layer_norm_eps: float = 1e-6
  hidden_act: str = "gelu_pytorch_tanh"

  @property
  def grid_size(self) -> int:
    return self.image_size // self.patch_size

  @classmethod
  def from_hf(cls, d: dict[str, Any]) -> "SiglipVisionConfig":
    act = d.get("hidden_act", "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu", "gelu_new", "quick_gelu"):
      raise ConfigError(f"SigLIP hidden_act={act!r} is not supported.")
    return cls(
        hidden_size=d.get("hidden_size", 768),
        intermediate_size=d.get("intermediate_size", 3072),
        num_hidden_layers=d.get("num_hidden_layers", 12),
        num_attention_heads=d.get("num_attention_heads", 12),
        num_channels=d.get("num_channels", 3),
        image_size=d.get("image_size", 224),
        patch_size=d.get("patch_size", 16),
        layer_norm_eps=d.get("layer_norm_eps", 1e-6),
        hidden_act=act,
    )


@dataclasses.dataclass(frozen=True)
class LlavaOnevisionConfig:
  vision: SiglipVisionConfig = dataclasses.field(default_factory=SiglipVisionConfig)
  text: Qwen2Config = dataclasses.field(default_factory=Qwen2Config)
  vision_feature_layer: int = -1
  projector_hidden_act: str = "gelu"
  multimodal_projector_bias: bool = True
  image_token_id: int = 151646
  video_token_id: int = 151647

  @property
  def pooled_grid(self) -> tuple[int, int]:
    g = self.vision.grid_size
    return (g + 1) // 2, (g + 1) // 2

  @property
  def tokens_per_frame(self) -> int:
    h, w = self.pooled_grid
    return h * w

  @classmethod
  def from_hf(cls, d: dict[str, Any]) -> "LlavaOnevisionConfig":
    if d.get("model_type") not in (None, "llava_onevision"):
      raise ConfigError(f"Expected model_type 'llava_onevision', got {d.get('model_type')!r}.")
    layer = d.get("vision_feature_layer", -1)
    if not isinstance(layer, int):
      raise ConfigError(f"vision_feature_layer={layer!r}: only a single int layer is supported.")
    strategy = d.get("vision_feature_select_strategy", "full")
    if strategy != "full":
      raise ConfigError(
          f"vision_feature_select_strategy={strategy!r} is not supported for SigLIP towers (only 'full').")
    act = d.get("projector_hidden_act", "gelu")
    if act != "gelu":
      raise ConfigError(f"projector_hidden_act={act!r} is not supported (only 'gelu').")
    vd = dict(d.get("vision_config") or {})
    if vd.get("model_type", "siglip_vision_model") not in ("siglip_vision_model",):
      raise ConfigError(f"Vision tower {vd.get('model_type')!r} is not supported (only SigLIP).")
    td = dict(d.get("text_config") or {})
    if td.get("model_type", "qwen2") != "qwen2":
      raise ConfigError(f"Text model {td.get('model_type')!r} is not supported (only qwen2).")
    # transformers forwards a text-level tie flag to the top level; honour either.
    if d.get("tie_word_embeddings"):
      td["tie_word_embeddings"] = True
    return cls(
        vision=SiglipVisionConfig.from_hf(vd),
        text=Qwen2Config.from_hf(td),
        vision_feature_layer=layer,
        projector_hidden_act=act,
        multimodal_projector_bias=bool(d.get("multimodal_projector_bias", True)),
        image_token_id=d.get("image_token_index", d.get("image_token_id", 151646)),
        video_token_id=d.get("video_token_index", d.get("video_token_id", 151647)),
    )
