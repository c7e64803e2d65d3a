"""Pure entry points of the frozen video LLM: encode a video, prefill with a static-size subset of
visual tokens, and score multiple-choice options from the logits at the answer position.

Sequence layout (the LLaVA-OneVision chat format with the video first in the user turn):

    [prefix text tokens] [k kept visual tokens, in temporal order] [image_newline] [suffix text tokens]

The prefix (chat header up to the video placeholder) has the same length across the batch; the suffix
(question, options, assistant header) is right-padded to a static length and `suffix_len` gives each
sample's true length. Causal attention makes right padding exact: nothing after the answer position
can change it. `keep_valid` (optional) masks padded slots of a variable-size keep set.

Position ids: "original" gives every kept token the position it had in the full sequence (the
text after the video keeps its original positions too); "repacked" numbers the valid tokens
contiguously, as if the dropped tokens had never existed.

What the LLM sees of the video is a `score_jax.compress.compressed.Compressed` (tokens, their position
ids, validity): `assemble_compressed` builds the decoder input from it, and `assemble_inputs` /
`prefill_logits` take either one (pass it as `visual` with `keep_idx=None`) or, as before, the visual
tokens and kept indices (selection, i.e. `compressed.gather`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from score_jax.compress.compressed import Compressed, gather
from score_jax.models.llava_onevision import LlavaOnevision

POSITION_MODES = ("original", "repacked")


class PrefillInputs(NamedTuple):
  embeds: jnp.ndarray     # [B, L, d]
  positions: jnp.ndarray  # [B, L] int32
  valid: jnp.ndarray      # [B, L] bool
  answer_index: jnp.ndarray  # [B] int32: position whose logits predict the answer


def encode_video(model: LlavaOnevision, params, frames: jnp.ndarray) -> jnp.ndarray:
  """Normalised frames [B, T, H, W, C] -> visual tokens [B, T, P, d]."""
  return model.apply({"params": params}, frames, method=LlavaOnevision.encode_video)


def assemble_compressed(model: LlavaOnevision, params, video: Compressed, prefix_ids: jnp.ndarray,
                        suffix_ids: jnp.ndarray, suffix_len: jnp.ndarray,
                        position_mode: str = "original") -> PrefillInputs:
  """Builds the decoder input from what the LLM sees of the video: [prefix][video.tokens][newline][suffix]."""
  if position_mode not in POSITION_MODES:
    raise ValueError(f"position_mode={position_mode!r}; expected one of {POSITION_MODES}.")
  b, k, d = video.tokens.shape
  if video.positions.shape != (b, k) or video.valid.shape != (b, k):
    raise ValueError(f"Compressed video: positions {video.positions.shape} and valid {video.valid.shape} "
                     f"must both be [B, k] = {(b, k)}.")
  n = video.span
  lp, ls = prefix_ids.shape[1], suffix_ids.shape[1]
  apply = lambda method, *a: model.apply({"params": params}, *a, method=method)
  newline = jnp.broadcast_to(apply(LlavaOnevision.newline), (b, 1, d))
  embeds = jnp.concatenate([apply(LlavaOnevision.embed, prefix_ids), video.tokens.astype(model.dtype), newline,
                            apply(LlavaOnevision.embed, suffix_ids)], axis=1)
  suffix_valid = jnp.arange(ls)[None, :] < suffix_len[:, None]
  valid = jnp.concatenate([jnp.ones((b, lp), bool), video.valid, jnp.ones((b, 1), bool), suffix_valid],
                          axis=1)
  if position_mode == "original":
    positions = jnp.concatenate([
        jnp.broadcast_to(jnp.arange(lp), (b, lp)), lp + video.positions, jnp.full((b, 1), lp + n),
        jnp.broadcast_to(lp + n + 1 + jnp.arange(ls), (b, ls))], axis=1)
  else:
    positions = jnp.cumsum(valid, axis=1) - 1
  answer_index = (lp + k + 1 + suffix_len - 1).astype(jnp.int32)
  return PrefillInputs(embeds, positions.astype(jnp.int32), valid, answer_index)


def assemble_inputs(model: LlavaOnevision, params, visual, keep_idx: jnp.ndarray | None,
                    prefix_ids: jnp.ndarray, suffix_ids: jnp.ndarray, suffix_len: jnp.ndarray,
                    keep_valid: jnp.ndarray | None = None,
                    position_mode: str = "original") -> PrefillInputs:
  """Builds the decoder input from visual tokens [B, N, d] (or [B, T, P, d]) and kept indices [B, k]
  (selection), or from a `Compressed` video passed as `visual` with `keep_idx=None`."""
  if isinstance(visual, Compressed):
    if keep_idx is not None or keep_valid is not None:
      raise ValueError("assemble_inputs: a Compressed video carries its own positions and validity; "
                       "pass keep_idx=None and keep_valid=None.")
    video = visual
  elif keep_idx is None:
    raise ValueError("assemble_inputs: keep_idx is None, so `visual` must be a Compressed video.")
  else:
    video = gather(visual, keep_idx, keep_valid)
  return assemble_compressed(model, params, video, prefix_ids, suffix_ids, suffix_len, position_mode)


def decode(model: LlavaOnevision, params, inputs: PrefillInputs) -> jnp.ndarray:
  """Final hidden states [B, L, d] of the decoder."""
  return model.apply({"params": params}, inputs.embeds, inputs.positions, inputs.valid)


def prefill_logits(model: LlavaOnevision, params, visual, keep_idx, prefix_ids, suffix_ids, suffix_len,
                   keep_valid=None, position_mode: str = "original") -> jnp.ndarray:
  """Next-token logits [B, V] at the answer position, given only the kept visual tokens (or a
  `Compressed` video as `visual`, keep_idx None)."""
  inputs = assemble_inputs(model, params, visual, keep_idx, prefix_ids, suffix_ids, suffix_len,
                           keep_valid, position_mode)
  hidden = decode(model, params, inputs)
  last = jnp.take_along_axis(hidden, inputs.answer_index[:, None, None], axis=1)[:, 0]
  return model.apply({"params": params}, last, method=LlavaOnevision.logits).astype(jnp.float32)


def option_logprobs(logits: jnp.ndarray, option_token_ids: jnp.ndarray,
                    num_options: jnp.ndarray | None = None) -> jnp.ndarray:
  """Log-probabilities [B, n_options] of each option's answer token (e.g. "A".."D") under the LM.

  `num_options` [B] (samples with fewer options than the batch's widest): the slots past a sample's
  own options get -inf, so a letter that was never shown can never be the answer."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  ids = jnp.broadcast_to(option_token_ids, (logits.shape[0],) + option_token_ids.shape[-1:])
  out = jnp.take_along_axis(logp, ids, axis=1)
  if num_options is None:
    return out
  return jnp.where(jnp.arange(out.shape[-1])[None, :] < num_options[:, None], out, -jnp.inf)


def choice_ids(batch: dict, letter_ids: jnp.ndarray) -> jnp.ndarray:
  """The token ids the options are scored by: the batch's per-sample "option_ids" [B, n] (the
  "option_word" format, see `score_jax.models.prompt.ANSWER_FORMATS`), else the letter ids [n]."""
  return batch["option_ids"] if "option_ids" in batch else letter_ids


def all_keep_indices(batch: int, num_tokens: int) -> jnp.ndarray:
  """Indices [B, N] that keep every visual token (the uncompressed model)."""
  return jnp.broadcast_to(jnp.arange(num_tokens, dtype=jnp.int32), (batch, num_tokens))
