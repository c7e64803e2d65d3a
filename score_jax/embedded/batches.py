"""Turns question-answering samples (generated or loaded) into model-ready numpy batches."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from score_jax.world.oracle import oracle_scores
from score_jax.models.preprocess import normalize_frames
from score_jax.models.prompt import PromptEncoder


def encode_text(questions: Sequence[str], options: Sequence[Sequence[str]], prompts: PromptEncoder,
                suffix_len: int, tasks: Sequence[str] | None = None, sample_ids: Sequence[str] | None = None
                ) -> dict[str, np.ndarray]:
  """prefix, suffix, suffix_len, and "option_ids" [B, n] when the prompt format scores options by
  per-sample tokens (see `PromptEncoder.option_word_ids`). `tasks`: the samples' benchmark tasks (the
  "lmms_eval" prompt style picks each sample's text by it); `sample_ids` name samples in errors."""
  prefix, suffix, lengths = prompts.encode_batch(questions, options, suffix_len, tasks, sample_ids)
  out = {"prefix": prefix, "suffix": suffix, "suffix_len": lengths}
  ids = prompts.option_word_ids(options)
  if ids is not None:
    out["option_ids"] = ids
  return out


def encode_samples(samples: Sequence[dict], prompts: PromptEncoder, suffix_len: int) -> dict[str, np.ndarray]:
  """Stacks samples (`frames`, `question`, `options`, `answer`) into arrays the model and RL code take."""
  out = encode_text([s["question"] for s in samples], [s["options"] for s in samples], prompts, suffix_len)
  out["frames"] = normalize_frames(np.stack([s["frames"] for s in samples]))
  out["answer"] = np.asarray([s["answer"] for s in samples], np.int32)
  return out


def encode_grain_batch(batch: dict[str, np.ndarray], prompts: PromptEncoder, suffix_len: int,
                       patch: int = 8, pooled_grid: int = 4) -> dict[str, np.ndarray]:
  """Same as `encode_samples` for a batch from `score_jax.world.sources` (text as unicode arrays)."""
  out = encode_text([str(q) for q in batch["question"]], [[str(o) for o in row] for row in batch["options"]],
                    prompts, suffix_len)
  out["frames"] = normalize_frames(batch["frames"])
  out["answer"] = batch["answer"].astype(np.int32)
  if "relevant" in batch:
    out["oracle_scores"] = np.stack([oracle_scores(r, patch, pooled_grid) for r in batch["relevant"]])
  return out
