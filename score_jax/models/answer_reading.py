"""How the frozen LLM's multiple-choice answer is read (`config.model.answer_reading`).

- "logits": one prefill; argmax over the log-probs of the answer tokens at the answer position (the
  letters actually shown, masked per sample by `num_options`; per-sample first tokens in the
  "option_word" format). Fast; the only reading RL uses.
- "option_likelihood": the sum of the log-probs of each option's whole tokenised text as the
  continuation of the answer position (`continuation_texts`), all options scored in one forward pass
  (each option's tokens see the prompt and their own earlier tokens only). Separates options that
  share a first token ("A cup." / "A phone.") where "logits" in the cloze format ties them.
- "generate": greedy decoding with a KV cache (`score_jax.models.generate`), then the benchmark's own
  answer parser (`score_jax.protocol.answer_parsing.parse_answer`, lmms-eval's per-task parsers) for
  samples with a benchmark `task`; without one, a plain fallback (the leading letter, or in the cloze
  format the option text the answer starts with; see `parse_generated`). Text that names no option
  counts as wrong (prediction -1).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.models import prefill as prefill_lib
from score_jax.models.attention import attention_mask
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.prompt import LETTERS

READINGS = ("logits", "option_likelihood", "generate")
DEFAULT_READING = "logits"
# lmms-eval's VideoMME and MLVU generation length (lmms_eval/tasks/videomme/_default_template_yaml,
# mlvu/mlvu_dev.yaml: max_new_tokens 16; longvideobench/*.yaml use 32) at commit 75571cfe0fa3.
DEFAULT_MAX_NEW_TOKENS = 16
CONTINUATION_BUCKET = 8  # continuation lengths are padded to a multiple of this (fewer compilations)
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")  # Qwen2 turn and document ends, when the vocabulary has them


@dataclasses.dataclass(frozen=True)
class ReadingSettings:
  reading: str = DEFAULT_READING
  max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  # "generate" only

  def __post_init__(self):
    if self.reading not in READINGS:
      raise ValueError(f"config.model.answer_reading={self.reading!r}; expected one of {READINGS}.")
    n = self.max_new_tokens
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
      raise ValueError(f"config.model.max_new_tokens={n!r} must be a positive integer.")


def reading_settings(model_config) -> ReadingSettings:
  """`config.model.answer_reading` and `config.model.max_new_tokens` (defaults if unset), checked."""
  return ReadingSettings(model_config.get("answer_reading", DEFAULT_READING),
                         model_config.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS))


# ------------------------------------------------------------------------------------ option likelihood

def continuation_texts(options: Sequence[str], answer_format: str) -> list[str]:
  """The text each option is scored by: the option itself in the cloze ("option_word") format; the
  letter and the option as the lettered prompt lists them ("B. A cup.") in the "letter" format."""
  if answer_format == "option_word":
    return [str(o) for o in options]
  return [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]


def continuation_ids(tokenizer, options: Sequence[Sequence[str]], answer_format: str, width: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
  """(ids [B, n, Lc] int32, lengths [B, n] int32) of every option's continuation text; n = `width`
  (at least the widest row), Lc the longest continuation rounded up to `CONTINUATION_BUCKET`. Slots
  past a row's options have length 0."""
  rows = [[list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in continuation_texts(r, answer_format)]
          for r in options]
  n = max([len(r) for r in rows] + [width or 0])
  longest = max((len(t) for r in rows for t in r), default=1)
  for r, texts in zip(rows, options):
    for toks, text in zip(r, texts):
      if not toks:
        raise ValueError(f"Option {text!r} has no tokens; option_likelihood cannot score it.")
  lc = -(-longest // CONTINUATION_BUCKET) * CONTINUATION_BUCKET
  ids = np.zeros((len(rows), n, lc), np.int32)
  lens = np.zeros((len(rows), n), np.int32)
  for i, r in enumerate(rows):
    for j, toks in enumerate(r):
      ids[i, j, :len(toks)] = toks
      lens[i, j] = len(toks)
  return ids, lens


def option_loglikelihoods(model: LlavaOnevision, params, inputs: prefill_lib.PrefillInputs, cont_ids, cont_len,
                          num_options=None) -> jnp.ndarray:
  """Sum of log-probs [B, n] (float32) of each option's continuation tokens `cont_ids` [B, n, Lc]
  (true lengths `cont_len` [B, n]) after the answer position; -inf for empty slots and slots past a
  sample's `num_options`.

  One forward pass over [prefill | option 1 | ... | option n]: the prefill is causal as in
  `prefill.decode`; option tokens see the valid prompt tokens up to the answer position and their own
  option's earlier tokens, at position ids that continue the answer's (answer + 1, + 2, ...)."""
  b, l = inputs.valid.shape
  n, lc = cont_ids.shape[1:]
  m = n * lc
  opt = jnp.repeat(jnp.arange(n), lc)                   # [m] option of each continuation slot
  j = jnp.tile(jnp.arange(lc), n)                       # [m] token index within its option
  cont_valid = (j[None, :] < jnp.repeat(cont_len, lc, axis=1))  # [B, m]
  prompt_keys = inputs.valid & (jnp.arange(l)[None, :] <= inputs.answer_index[:, None])  # [B, L]
  own = (opt[:, None] == opt[None, :]) & (j[None, :] <= j[:, None])                       # [m, m]
  prefill_mask = jnp.concatenate([attention_mask(inputs.valid, inputs.valid, causal=True),
                                  jnp.zeros((b, 1, l, m), bool)], axis=3)
  cont_mask = jnp.concatenate([jnp.broadcast_to(prompt_keys[:, None, None, :], (b, 1, m, l)),
                               own[None, None] & cont_valid[:, None, None, :]], axis=3)
  mask = jnp.concatenate([prefill_mask, cont_mask], axis=2)
  answer_pos = jnp.take_along_axis(inputs.positions, inputs.answer_index[:, None], axis=1)
  positions = jnp.concatenate([inputs.positions, answer_pos + 1 + j[None, :]], axis=1)
  embeds = jnp.concatenate([inputs.embeds, model.apply({"params": params}, cont_ids.reshape(b, m),
                                                       method=LlavaOnevision.embed)], axis=1)
  hidden, _ = model.apply({"params": params}, embeds, positions, mask, method=LlavaOnevision.with_cache)
  # token j of an option is predicted at the answer position (j = 0) or at the option's token j - 1
  src = jnp.where(j[None, :] == 0, inputs.answer_index[:, None], l + jnp.arange(m)[None, :] - 1)
  h = jnp.take_along_axis(hidden, src[..., None], axis=1)
  logp = jax.nn.log_softmax(model.apply({"params": params}, h, method=LlavaOnevision.logits).astype(jnp.float32))
  tok = jnp.take_along_axis(logp, cont_ids.reshape(b, m)[..., None], axis=2)[..., 0]
  total = jnp.where(cont_valid, tok, 0.0).reshape(b, n, lc).sum(-1)
  shown = cont_len > 0
  if num_options is not None:
    shown &= jnp.arange(n)[None, :] < num_options[:, None]
  return jnp.where(shown, total, -jnp.inf)


# ------------------------------------------------------------------------------------ generation

def stop_token_ids(tokenizer) -> tuple[int, ...]:
  """The tokenizer's EOS and those of `STOP_TOKENS` its vocabulary has (lmms-eval stops LLaVA-OneVision
  at the qwen_1_5 separator `<|im_end|>`, lmms_eval/models/simple/llava_onevision.py)."""
  vocab = tokenizer.get_vocab()
  ids = [tokenizer.eos_token_id] + [vocab.get(t) for t in STOP_TOKENS]
  out = tuple(dict.fromkeys(int(i) for i in ids if i is not None))
  if not out:
    raise ValueError("The tokenizer has no EOS token and none of "
                     f"{STOP_TOKENS}; generation would never stop early.")
  return out


def pad_token_id(tokenizer) -> int:
  """What fills a sample's output after it stopped: the tokenizer's pad token, else its first stop token."""
  pad = tokenizer.pad_token_id
  return int(pad) if pad is not None else stop_token_ids(tokenizer)[0]


def generated_texts(tokenizer, tokens: np.ndarray, stop_ids: Sequence[int]) -> list[str]:
  """Each row of `tokens` [B, T] cut at its first stop token, decoded without special tokens and
  stripped (as lmms-eval's llava_onevision wrapper decodes)."""
  out = []
  for row in np.asarray(tokens):
    stops = np.flatnonzero(np.isin(row, list(stop_ids)))
    row = row[:stops[0]] if stops.size else row
    out.append(tokenizer.decode(row.tolist(), skip_special_tokens=True).strip())
  return out


def leading_letter(text: str, num_options: int) -> int | None:
  """The fallback parser: the option letter A-J that starts the text (after an optional "(");
  None if it does not start with one of the first `num_options` letters followed by a non-letter."""
  s = text.strip().lstrip("(")
  if not s or s[0] not in LETTERS[:num_options] or (len(s) > 1 and s[1].isalpha()):
    return None
  return LETTERS.index(s[0])


def option_text_match(text: str, options: Sequence[str]) -> int | None:
  """Cloze fallback: the option whose text (case and a final "." ignored) the answer equals, else the
  longest one it starts with as whole words; None if none."""
  norm = lambda s: s.strip().rstrip(".").strip().lower()
  t = norm(text)
  exact = [i for i, o in enumerate(options) if norm(o) == t]
  if exact:
    return exact[0]
  starts = [(len(norm(o)), i) for i, o in enumerate(options)
            if norm(o) and t.startswith(norm(o)) and not t[len(norm(o))].isalnum()]
  return max(starts)[1] if starts else None


def parse_generated(text: str, num_options: int, task: str | None = None, options: Sequence[str] | None = None,
                    answer_format: str = "letter") -> int | None:
  """Option index named by generated `text`: lmms-eval's parser for a benchmark `task`; without a task,
  `option_text_match` in the cloze format and `leading_letter` in the letter format."""
  if task:
    from score_jax.protocol.answer_parsing import parse_answer
    return parse_answer(task, text, num_options, options)
  if answer_format == "option_word":
    return option_text_match(text, options or [])
  return leading_letter(text, num_options)


# ------------------------------------------------------------------------------------ batches

def sample_texts(batch: dict) -> dict:
  """The host-side text a grain batch carries that the "option_likelihood" and "generate" readings
  need: "options" (each row cut to its `num_options`) and "task" (when the source records one)."""
  rows = [[str(o) for o in row] for row in batch["options"]]
  if "num_options" in batch:
    rows = [r[:int(n)] for r, n in zip(rows, np.asarray(batch["num_options"]))]
  out = {"options": rows}
  if "task" in batch:
    out["task"] = [str(t) for t in batch["task"]]
  return out


def reading_inputs(reading: str, batch: dict, tokenizer, answer_format: str, width: int | None = None) -> dict:
  """What `reading` adds to a batch's text inputs: option continuation ids ("option_likelihood"), the
  option texts and tasks ("generate"; host-side lists, not passed to jitted code)."""
  if reading == "logits":
    return {}
  if "options" not in batch:
    raise ValueError(f"config.model.answer_reading={reading!r} needs each batch's option texts (\"options\", "
                     "see answer_reading.sample_texts); this batch has none.")
  if reading == "option_likelihood":
    ids, lens = continuation_ids(tokenizer, batch["options"], answer_format, width)
    return {"continuation_ids": ids, "continuation_len": lens}
  return {"options": batch["options"], "task": batch.get("task")}
