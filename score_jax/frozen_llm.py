"""The frozen video LLM as the RL code sees it: module, sharded params, prompt encoder, jitted encoder."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.models import hf_loading, prefill
from score_jax.models.attention import DEFAULT_IMPLEMENTATION
from score_jax.models.answer_reading import ReadingSettings, reading_settings
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.prompt import DEFAULT_PROMPT_STYLE, PromptEncoder


@dataclasses.dataclass
class FrozenLLM:
  cfg: object
  module: object
  params: object
  prompts: PromptEncoder
  suffix_len: int
  num_frames: int
  num_options: int = 4
  reading: ReadingSettings = ReadingSettings()  # how evaluation reads the answer (RL always uses logits)

  @functools.cached_property
  def option_ids(self) -> np.ndarray:
    """Token id of each option letter (numpy, so that it is a constant inside any trace); batches of the
    "option_word" format carry their own per-sample "option_ids" instead."""
    return np.asarray(self.prompts.option_token_ids(self.num_options), np.int32)

  @functools.cached_property
  def encode(self):
    """Jitted frames [B, T, H, W, C] -> visual tokens [B, T, P, d] (the frozen vision side)."""
    return jax.jit(functools.partial(prefill.encode_video, self.module))

  @functools.cached_property
  def _embed_text(self):
    return jax.jit(lambda params, ids: self.module.apply({"params": params}, ids, method=LlavaOnevision.embed))

  def question_features(self, suffix: jnp.ndarray, suffix_len: jnp.ndarray) -> dict:
    """The prompt after the video (question, options) as the LLM's input embeddings, for
    question-conditioned policies: {"question" [B, L, d] float32, "question_mask" [B, L]}."""
    emb = self._embed_text(self.params, suffix).astype(jnp.float32)
    return {"question": emb, "question_mask": jnp.arange(suffix.shape[1])[None, :] < suffix_len[:, None]}


def answer_format(model_config) -> str:
  """`config.model.answer_format` (see `score_jax.models.prompt.ANSWER_FORMATS`), "letter" if unset."""
  return model_config.get("answer_format", "letter")


def prompt_style(model_config) -> str:
  """`config.model.prompt_style` (see `score_jax.models.prompt.PROMPT_STYLES`), the default if unset."""
  return model_config.get("prompt_style", DEFAULT_PROMPT_STYLE)


def attention_implementation(model_config) -> str:
  """`config.model.attention` (see `score_jax.models.attention.IMPLEMENTATIONS`), "auto" if unset."""
  return model_config.get("attention", DEFAULT_IMPLEMENTATION)


def prompt_encoder(model_config, folder: str) -> PromptEncoder:
  """The prompt encoder of the checkpoint `folder` with the config's answer format and prompt style."""
  return PromptEncoder.from_folder(folder, answer_format(model_config), prompt_style(model_config))


def load_frozen_llm(model_config, mesh) -> FrozenLLM:
  """From `config.model`: kind "embedded" (the built-in model) or "hf" (a local checkpoint folder)."""
  reading = reading_settings(model_config)  # config.model.answer_reading: a bad value fails before loading
  return dataclasses.replace(_load(model_config, mesh), reading=reading)


def _load(model_config, mesh) -> FrozenLLM:
  if model_config.kind == "embedded":
    from score_jax.embedded import base_model, world_text
    folder = base_model.ensure_base_model(model_config.checkpoint or base_model.DEFAULT_DIR)
    cfg, module, params = hf_loading.load_llava_onevision(folder, mesh=mesh, dtype=model_config.dtype,
                                                          attention=attention_implementation(model_config))
    return FrozenLLM(cfg, module, params, prompt_encoder(model_config, folder),
                     world_text.SUFFIX_LEN, world_text.WORLD.frames)
  if model_config.kind == "hf":
    if not model_config.checkpoint:
      raise ValueError("config.model.kind='hf' needs config.model.checkpoint (a local checkpoint folder).")
    cfg, module, params = hf_loading.load_llava_onevision(model_config.checkpoint, mesh=mesh,
                                                          dtype=model_config.dtype,
                                                          attention=attention_implementation(model_config))
    return FrozenLLM(cfg, module, params, prompt_encoder(model_config, model_config.checkpoint),
                     model_config.get("suffix_len", 128), model_config.get("num_frames", 32),
                     model_config.get("num_options", 4))
  raise ValueError(f"config.model.kind={model_config.kind!r}; expected 'embedded' or 'hf'.")
