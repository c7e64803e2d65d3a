"""Supervised batches for the embedded base model: answer targets, open-ended prompts, input views.

Nothing here reads which tokens a question is about (no oracle, no target mask): the frozen model
must not be tuned to what any one family of selectors produces. Only the scene's dense labels
(`cells`: the colour and shape in each token's cell, for every object alike) are read. What makes the
tiny model learnable and usable under compression:
- A fraction of the samples use the open-ended prompt (question + "answer with a single word"),
  whose target is the answer word itself (the cloze reading the embedded default evaluates).
- On multiple-choice samples every option word is also a target: "yes" if it is the answer, else
  "no" (learning a letter from one letter target alone is a long plateau for a small model).
- Views, as real video LLMs are trained on many frame rates and resolutions (`view_masks`): a
  fraction of the samples see a uniformly random subset of their tokens (rate drawn per sample,
  blind to the question: the answer's tokens may be gone), another fraction only every 2nd or 4th
  frame, another a random subset of the scene's objects (`object_masks`: each colour-shape pair kept
  or dropped in every frame, every object alike, plus a little background; these rows replace
  `object_fraction` of all rows), so that the model also answers from a few objects without the rest
  of the scene. Whole batches of 2x2- or 1x2-pooled grids (`base_model.POOLED_GRIDS`) and H.264-encoded
  clips (`base_model`) are the other views.
- Grounding rows (`grounding_fraction`): the question is replaced by a referring expression of a
  random object of the scene (any object, drawn from `cells`): "<colour> <shape>", "<shape>" or
  "<colour>", and the answer position is trained to point at the tokens it names (`ground`, see `base_model.AuxHeads`);
  these rows have no answer target. This is the grounding data real video LLMs are trained on
  (referring expressions, boxes); it never names the sample's own question or its target, and
  without it the small model never learns to look up an object by its name (static questions stay
  at chance).
- Scene complexity grows during training (`WorldConfig.object_rate`, see `base_model.object_rate`):
  first scenes with the question's object and no distractors or clutter, then the other objects
  fade in. During that ramp the model sees every object's tokens and the background's at rate**2
  (`foreground_masks`): at first the only visible token is the only object, so attention has
  nowhere else to go (without this a small model from scratch sits at chance: nothing rewards
  looking at the right token until it already can). After the ramp, the views above.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from score_jax.models.preprocess import normalize_frames
from score_jax.models.prompt import PromptEncoder

FRAME_STRIDES: tuple[int, ...] = (2, 4)


def view_masks(rng: np.random.Generator, batch: int, frames: int, tokens_per_frame: int,
               subset_fraction: float, frame_fraction: float, min_rate: float) -> np.ndarray:
  """bool [B, T * P]: all True, except `subset_fraction` of the rows keep each token at a rate drawn
  uniformly from [min_rate, 1], and `frame_fraction` keep every s-th frame (s from FRAME_STRIDES,
  random phase). Independent of the samples' content."""
  n = frames * tokens_per_frame
  kind = rng.random((batch, 1))
  rate = rng.uniform(min_rate, 1.0, size=(batch, 1))
  subset = rng.random((batch, n)) < rate
  stride = rng.choice(np.asarray(FRAME_STRIDES), size=(batch, 1))
  phase = rng.integers(0, stride)
  frame_of = np.arange(n)[None] // tokens_per_frame
  strided = (frame_of - phase) % stride == 0
  return np.where(kind < subset_fraction, subset,
                  np.where(kind < subset_fraction + frame_fraction, strided, True))


def object_masks(rng: np.random.Generator, cells: np.ndarray, background_max: float = 0.1) -> np.ndarray:
  """bool [B, T * P]: per row, each colour-shape pair of `cells` int [B, T, P, 2] kept in every frame or
  dropped, at a keep rate drawn uniformly from [0, 1] per row (an object that changes colour is two
  pairs, its two halves drawn apart; two objects of one pair share their fate); background tokens at a
  rate drawn from [0, background_max]. Blind to the question: any object may be kept or dropped."""
  b = cells.shape[0]
  flat = cells.reshape(b, -1, 2).astype(np.int64)
  is_object = flat[..., 0] >= 0
  pair = np.where(is_object, flat[..., 0] * (flat[..., 1].max(initial=0) + 1) + flat[..., 1], 0)
  kept_pairs = rng.random((b, int(pair.max(initial=0)) + 1)) < rng.uniform(0.0, 1.0, size=(b, 1))
  objects = np.take_along_axis(kept_pairs, pair, axis=1) & is_object
  background = ~is_object & (rng.random(is_object.shape) < rng.uniform(0.0, background_max, size=(b, 1)))
  return objects | background


def foreground_masks(rng: np.random.Generator, cells: np.ndarray, rate: float) -> np.ndarray:
  """bool [B, T * P]: every token whose cell holds an object (any object: `cells` int [B, T, P, 2],
  colour >= 0), and the others at `rate ** 2`."""
  objects = cells[..., 0].reshape(cells.shape[0], -1) >= 0
  return objects | (rng.random(objects.shape) < rate ** 2)


def grounding_rows(rng: np.random.Generator, cells: np.ndarray, colors: Sequence[str], shapes: Sequence[str],
                   fraction: float) -> tuple[np.ndarray, list[str | None], np.ndarray]:
  """(use [B], referring expression per row (None: not a grounding row), target [B, T * P]: the tokens
  it names) for a `fraction` of the rows, each about a random object present in `cells`, named by
  colour and shape, by shape alone or by colour alone (one third each)."""
  b = cells.shape[0]
  flat = cells.reshape(b, -1, 2)
  use = rng.random(b) < fraction
  texts: list[str | None] = [None] * b
  target = np.zeros(flat.shape[:2], bool)
  for i in np.flatnonzero(use):
    present = np.flatnonzero(flat[i, :, 0] >= 0)
    if not len(present):
      use[i] = False
      continue
    c, sh = flat[i, present[rng.integers(len(present))]]
    form = int(rng.integers(3))
    texts[i] = (f"{colors[c]} {shapes[sh]}", shapes[sh], colors[c])[form]
    same_color, same_shape = flat[i, :, 0] == c, flat[i, :, 1] == sh
    target[i] = (same_color & same_shape, same_shape, same_color)[form]
  return use, texts, target


def sft_batch(samples: Sequence[dict], prompts: PromptEncoder, suffix_len: int, rng: np.random.Generator,
              open_fraction: float, subset_fraction: float, subset_min_rate: float,
              frame_fraction: float = 0.0, tokens_per_frame: int = 16,
              foreground: float | None = None, grounding_fraction: float = 0.0,
              names: tuple[Sequence[str], Sequence[str]] = ((), ()),
              object_fraction: float = 0.0) -> dict[str, np.ndarray]:
  """Model inputs plus `target` (token id to predict), `keep_valid` [B, T * tokens_per_frame]
  (`view_masks`, `object_masks` on `object_fraction` of the rows, or `foreground_masks` at rate
  `foreground` when given), per-option yes/no targets
  and the dense `cells` labels. Reads each sample's `frames`, `question`, `options`, `answer` and
  `cells`, nothing else. With `grounding_fraction`, that share of rows are grounding rows
  (`grounding_rows`; `names` = the world's colour and shape names, the order `cells` indexes)."""
  b = len(samples)
  cells = np.stack([s["cells"] for s in samples]).astype(np.int32)
  ground, texts, ground_target = grounding_rows(rng, cells, *names, grounding_fraction)
  is_open = (rng.random(b) < open_fraction) | ground
  options = [None if o else s["options"] for o, s in zip(is_open, samples)]
  questions = [t if g else s["question"] for g, t, s in zip(ground, texts, samples)]
  prefix, suffix, lengths = prompts.encode_batch(questions, options, suffix_len)
  answer = np.asarray([s["answer"] for s in samples], np.int32)
  letters = prompts.option_token_ids(len(samples[0]["options"]))
  words = np.asarray([prompts.tokenizer.convert_tokens_to_ids(s["options"][s["answer"]]) for s in samples],
                     np.int32)
  frames = np.stack([s["frames"] for s in samples])
  tok = prompts.tokenizer
  yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
  n_opt = len(letters)
  option_pos = np.zeros((b, n_opt), np.int32)
  for i in np.flatnonzero(~is_open):
    option_pos[i] = option_word_positions(suffix[i, :lengths[i]], letters, tok.convert_tokens_to_ids("."))
  option_target = np.where(np.arange(n_opt)[None] == answer[:, None], yes, no).astype(np.int32)
  if foreground is None:
    keep = view_masks(rng, b, frames.shape[1], tokens_per_frame, subset_fraction, frame_fraction, subset_min_rate)
    if object_fraction > 0:  # (no draws otherwise: builds without this view keep their random stream)
      keep = np.where((rng.random(b) < object_fraction)[:, None], object_masks(rng, cells), keep)
  else:
    keep = foreground_masks(rng, cells, foreground)
  return {"frames": normalize_frames(frames), "prefix": prefix,
          "suffix": suffix, "suffix_len": lengths, "answer": answer,
          "target": np.where(is_open, words, letters[answer]).astype(np.int32),
          "keep_valid": keep,
          "option_pos": option_pos, "option_target": option_target, "option_valid": ~is_open,
          "cells": cells, "ground": ground, "ground_target": ground_target}


def option_word_positions(suffix: np.ndarray, letters: np.ndarray, dot: int) -> np.ndarray:
  """Index in `suffix` of each option's first word ("A . cyan" -> the index of "cyan")."""
  out = []
  for letter in letters:
    hits = np.flatnonzero((suffix[:-2] == letter) & (suffix[1:-1] == dot))
    if len(hits) != 1:
      raise ValueError(f"Option letter id {letter} followed by '.' found {len(hits)} times in the prompt.")
    out.append(hits[0] + 2)
  return np.asarray(out, np.int32)
