"""Supervised batches for the embedded base model: answer targets, open-ended prompts, token subsets.

Two choices make the tiny model learnable from scratch and usable under compression:
- A fraction of the samples use the open-ended prompt (question + "answer with a single word"),
  whose target is the answer word itself. This gives the vision side a direct colour/shape signal;
  the multiple-choice samples (target: the option letter) then only have to match that word to
  the lettered options. Evaluation is multiple-choice only.
- On multiple-choice samples every option word is also a target: "yes" if it is the answer, else
  "no". Learning to look an answer up among lettered options from one letter target alone is
  a long plateau for a small model; these per-option targets remove it.
- A fraction of the samples see a random subset of their visual tokens (the tokens covering the
  answer's object always among them, the others kept at a random rate), marked through
  `keep_valid`. A frozen LLM that has only seen complete videos misreads sparse ones; real video
  LLMs are trained on many frame rates and resolutions, and this plays that part.
- Early in training the other objects are faded in (`object_rate` rising from 0 to 1, see
  `curriculum_masks`): the model first reads the answer off the target alone, then has to tell it
  apart from one, two, ... distractors. Without this ramp a small model trained from scratch sits at
  chance for thousands of steps: nothing rewards looking at the right token until it already can.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from score_jax.world.oracle import oracle_scores
from score_jax.models.preprocess import normalize_frames
from score_jax.models.prompt import PromptEncoder


def subset_masks(rng: np.random.Generator, relevant_scores: np.ndarray, fraction: float,
                 min_rate: float) -> np.ndarray:
  """bool [B, N]: all True, except for a `fraction` of rows that keep the relevant tokens plus others
  at a rate drawn uniformly from [min_rate, 1]."""
  b, n = relevant_scores.shape
  rate = rng.uniform(min_rate, 1.0, size=(b, 1))
  sub = (rng.random((b, n)) < rate) | (relevant_scores > 0)
  use = rng.random((b, 1)) < fraction
  return np.where(use, sub, True)


def curriculum_masks(rng: np.random.Generator, relevant_scores: np.ndarray, cells: np.ndarray,
                     object_rate: float) -> np.ndarray:
  """bool [B, N]: the relevant tokens, the other objects' tokens at `object_rate` and the remaining
  (background) tokens at `object_rate ** 2`; `cells` int [B, T, P, 2] marks object tokens (>= 0)."""
  b, n = relevant_scores.shape
  objects = cells[..., 0].reshape(b, n) >= 0
  u = rng.random((b, n))
  return (relevant_scores > 0) | (objects & (u < object_rate)) | (~objects & (u < object_rate ** 2))


def sft_batch(samples: Sequence[dict], prompts: PromptEncoder, suffix_len: int, rng: np.random.Generator,
              open_fraction: float, subset_fraction: float, subset_min_rate: float,
              object_rate: float | None = None, patch: int = 8, pooled_grid: int = 4) -> dict[str, np.ndarray]:
  """Model inputs plus `target` (token id to predict) and `keep_valid` [B, T * tokens per frame]:
  `curriculum_masks` at `object_rate` when given, else `subset_masks`."""
  b = len(samples)
  is_open = rng.random(b) < open_fraction
  options = [None if o else s["options"] for o, s in zip(is_open, samples)]
  prefix, suffix, lengths = prompts.encode_batch([s["question"] for s in samples], options, suffix_len)
  answer = np.asarray([s["answer"] for s in samples], np.int32)
  letters = prompts.option_token_ids(len(samples[0]["options"]))
  words = np.asarray([prompts.tokenizer.convert_tokens_to_ids(s["options"][s["answer"]]) for s in samples],
                     np.int32)
  relevant = np.stack([oracle_scores(s["relevant"], patch, pooled_grid).reshape(-1) for s in samples])
  cells = np.stack([s["cells"] for s in samples]).astype(np.int32)
  tok = prompts.tokenizer
  yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
  n_opt = len(letters)
  option_pos = np.zeros((b, n_opt), np.int32)
  for i in np.flatnonzero(~is_open):
    option_pos[i] = option_word_positions(suffix[i, :lengths[i]], letters, tok.convert_tokens_to_ids("."))
  option_target = np.where(np.arange(n_opt)[None] == answer[:, None], yes, no).astype(np.int32)
  return {"frames": normalize_frames(np.stack([s["frames"] for s in samples])), "prefix": prefix,
          "suffix": suffix, "suffix_len": lengths, "answer": answer,
          "target": np.where(is_open, words, letters[answer]).astype(np.int32),
          "keep_valid": (subset_masks(rng, relevant, subset_fraction, subset_min_rate) if object_rate is None
                         else curriculum_masks(rng, relevant, cells, object_rate)),
          "option_pos": option_pos, "option_target": option_target, "option_valid": ~is_open,
          "cells": cells, "relevant": relevant > 0}


def option_word_positions(suffix: np.ndarray, letters: np.ndarray, dot: int) -> np.ndarray:
  """Index in `suffix` of each option's first word ("A . cyan" -> the index of "cyan")."""
  out = []
  for letter in letters:
    hits = np.flatnonzero((suffix[:-2] == letter) & (suffix[1:-1] == dot))
    if len(hits) != 1:
      raise ValueError(f"Option letter id {letter} followed by '.' found {len(hits)} times in the prompt.")
    out.append(hits[0] + 2)
  return np.asarray(out, np.int32)
