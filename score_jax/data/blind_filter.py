"""Blind-test filtering: drop training questions the frozen LLM answers correctly without the video.

CaCoVID trains only on samples that need the video: before training the frozen LLM answers every question
with no visual tokens, and the samples it gets right are removed (their Video-R1 subset was filtered this
way). `blind_option_logprobs` scores the options on [prefix][suffix] alone (no video tokens, and by default
no image_newline either); with `with_newline=True` it equals `prefill.prefill_logits` on an empty video
(N = 0, k = 0), which also works. `blind_filter` runs any such function over batches and returns which
samples to keep (answered wrongly) and how many.
Reference: CaCoVID (arXiv 2602.01649), "blind test" data filtering.
"""
from __future__ import annotations

from typing import Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.models import prefill
from score_jax.models.llava_onevision import LlavaOnevision


class BlindFilterResult(NamedTuple):
  keep: np.ndarray  # bool [num_total]: answered wrongly without video -> keep for training
  num_kept: int
  num_total: int


def blind_option_logprobs(module: LlavaOnevision, params, prefix: jnp.ndarray, suffix: jnp.ndarray,
                          suffix_len: jnp.ndarray, option_ids: jnp.ndarray,
                          with_newline: bool = False) -> jnp.ndarray:
  """Option log-probs [B, n_options] of the frozen LLM given only the text ([prefix][newline?][suffix])."""
  b, lp = prefix.shape
  ls = suffix.shape[1]
  apply = lambda method, *a: module.apply({"params": params}, *a, method=method)
  parts = [apply(LlavaOnevision.embed, prefix)]
  if with_newline:
    parts.append(jnp.broadcast_to(apply(LlavaOnevision.newline), (b, 1, parts[0].shape[-1])))
  parts.append(apply(LlavaOnevision.embed, suffix))
  embeds = jnp.concatenate(parts, axis=1)
  lt = lp + int(with_newline)
  valid = jnp.concatenate([jnp.ones((b, lt), bool), jnp.arange(ls)[None, :] < suffix_len[:, None]], axis=1)
  positions = jnp.broadcast_to(jnp.arange(lt + ls, dtype=jnp.int32), (b, lt + ls))
  answer_index = (lt + suffix_len - 1).astype(jnp.int32)
  inputs = prefill.PrefillInputs(embeds, positions, valid, answer_index)
  hidden = prefill.decode(module, params, inputs)
  last = jnp.take_along_axis(hidden, answer_index[:, None, None], axis=1)[:, 0]
  logits = apply(LlavaOnevision.logits, last).astype(jnp.float32)
  return prefill.option_logprobs(logits, option_ids)


def make_blind_option_logprob_fn(module: LlavaOnevision, params, option_ids: jnp.ndarray,
                                 with_newline: bool = False) -> Callable[[dict], jnp.ndarray]:
  """Jitted `fn(batch) -> option log-probs [B, n_options]` for batches with prefix/suffix/suffix_len."""
  @jax.jit
  def run(params, prefix, suffix, suffix_len):
    return blind_option_logprobs(module, params, prefix, suffix, suffix_len, option_ids, with_newline)
  return lambda batch: run(params, batch["prefix"], batch["suffix"], batch["suffix_len"])


def blind_wrong(option_logp: jnp.ndarray, answer: jnp.ndarray) -> jnp.ndarray:
  """bool [B]: the blind answer (argmax over options) is not the right one."""
  return jnp.argmax(option_logp, axis=-1) != answer


def blind_filter(option_logprob_fn: Callable[[dict], jnp.ndarray], batches: Iterable[dict]) -> BlindFilterResult:
  """Runs `option_logprob_fn` over batches ({"answer" [B], optional "valid" [B] for padding, ...}).

  Returns the keep mask over all valid samples in order (True = answered wrongly without video).
  """
  keep = []
  for batch in batches:
    if "answer" not in batch:
      raise ValueError("blind_filter batches need an 'answer' entry.")
    wrong = np.asarray(blind_wrong(option_logprob_fn(batch), jnp.asarray(batch["answer"])))
    if "valid" in batch:
      wrong = wrong[np.asarray(batch["valid"], bool)]
    keep.append(wrong.astype(bool))
  keep = np.concatenate(keep) if keep else np.zeros((0,), bool)
  return BlindFilterResult(keep, int(keep.sum()), int(keep.size))
