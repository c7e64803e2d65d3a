"""The exact prompt of every eval sample, written without a model: `python -m score_jax.eval --dump_prompts=FILE`.

One JSON line per sample of `config.data.eval_file`, in file order:

    {"id": "vmme-001-1", "task": "videomme", "prompt": "<|im_start|>system\\n...", "input_ids": [151644, ...]}

`prompt` is the rendered text with its one video placeholder (`<image>` in the lmms_eval style, `<video>`
in the checkpoint's chat template); `input_ids` are the prefix ids, the checkpoint's video token id
(config.json `video_token_index`) where the visual tokens go, and the suffix ids. Only the checkpoint
folder's config.json and tokenizer files and the JSONL records are read (no weights, no videos), so
the prompts can be diffed against lmms-eval's before a run. Samples are those eval reads
(`config.model.num_options` at most, the first `config.eval.samples`; 0: all), except that samples
whose video is missing are listed too. An existing FILE is never overwritten.
"""
from __future__ import annotations

import json
import os

from absl import logging

from score_jax import config_checks
from score_jax.data import jsonl_format as jf


class DumpError(ValueError):
  """A prompt dump that cannot be written (wrong eval source, existing output file)."""


def checkpoint_folder(model_config) -> str:
  """The folder holding the config and tokenizer files of `config.model`."""
  if model_config.kind == "hf":
    return os.path.expanduser(model_config.checkpoint)
  from score_jax.embedded import base_model
  return base_model.ensure_base_model(model_config.checkpoint or base_model.DEFAULT_DIR)


def prompt_record(encoder, sample: jf.Sample, video_token_id: int) -> dict:
  """{"id", "task", "prompt", "input_ids"} of one sample (`encoder`: a `PromptEncoder`)."""
  task = sample.meta.get("task")
  name = repr(sample.id)
  prompt = encoder.render_prompt(sample.question, list(sample.options), task, name)
  prefix, suffix = encoder.encode(sample.question, list(sample.options), task, name)
  return {"id": sample.id, "task": task, "prompt": prompt, "input_ids": prefix + [int(video_token_id)] + suffix}


def eval_samples(config) -> list[jf.Sample]:
  """The samples of `config.data.eval_file` that eval reads (videos not checked)."""
  from score_jax.frozen_llm import FrozenLLM
  ds = jf.read_jsonl(os.path.expanduser(config.data.eval_file), strict=config.data.get("strict", False),
                     check_videos=False)
  max_options = config.model.get("num_options", FrozenLLM.num_options)
  samples = [s for s in ds.samples if len(s.options) <= max_options]
  if len(samples) < len(ds.samples):
    logging.warning("%s: %d samples have more than %d options (config.model.num_options); left out, as eval "
                    "leaves them out.", ds.path, len(ds.samples) - len(samples), max_options)
  return samples[:config.eval.samples] if config.eval.samples else samples


def dump_prompts(config, path: str) -> int:
  """Writes the prompt of every eval sample to the new file `path`; returns the number written."""
  from score_jax.frozen_llm import prompt_encoder
  from score_jax.models import hf_loading
  from score_jax.models.configs import LlavaOnevisionConfig
  config_checks.check_model(config.model)
  if config_checks.eval_source_kind(config) != "jsonl" or not config.data.get("eval_file"):
    raise DumpError("--dump_prompts writes the prompts of config.data.eval_file: set config.eval.source='jsonl' "
                    "and config.data.eval_file.")
  path = os.path.expanduser(path)
  if os.path.exists(path):
    raise DumpError(f"--dump_prompts={path} already exists; pass a new file (nothing was overwritten).")
  folder = checkpoint_folder(config.model)
  video_token_id = hf_loading.parse_config(folder, LlavaOnevisionConfig.from_hf).video_token_id
  encoder = prompt_encoder(config.model, folder)
  records = [prompt_record(encoder, s, video_token_id) for s in eval_samples(config)]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "x", encoding="utf-8") as f:  # "x": never replaces a file made meanwhile
    for r in records:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
  return len(records)
