"""Tokenizer, chat template and the LLaVA-OneVision multiple-choice prompt.

The tokenizer (and a chat template, if the folder has one) come from the checkpoint folder through
`transformers.AutoTokenizer`; nothing is downloaded. A prompt is rendered with the chat template,
cut at the single `<video>` placeholder, and returned as (prefix ids, suffix ids): the model inserts
the (kept) visual tokens and the closing `image_newline` between the two (see `prefill.py`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np

VIDEO_PLACEHOLDER = "<video>"
LETTERS = "ABCDEFGHIJ"
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
OPEN_INSTRUCTION = "Answer the question using a single word or phrase."
# How a multiple-choice answer is read off the answer position's logits:
#   "letter":      the lmms-eval prompt (lettered options + MC_INSTRUCTION); options scored by their letter.
#   "option_word": the cloze form (the question + OPEN_INSTRUCTION, options not shown); options scored by
#                  the log-prob of each option's first token, as likelihood-based multiple choice does.
ANSWER_FORMATS = ("letter", "option_word")

# The chat template shipped with the llava-hf LLaVA-OneVision processors (Qwen2 ChatML turns).
LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}"
    "{% endfor %}{{'<|im_end|>'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


class PromptError(ValueError):
  """A prompt or tokenizer that cannot produce the expected inputs."""


# Files that hold a tokenizer, any one set suffices: the `tokenizers` serialization, a BPE vocabulary
# with its merges (Qwen2, GPT-2), a sentencepiece or tiktoken model, a WordPiece vocabulary.
TOKENIZER_FILE_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"), ("tokenizer.model",),
                       ("spiece.model",), ("sentencepiece.bpe.model",), ("vocab.txt",))


def check_tokenizer_files(folder: str) -> None:
  """Raises PromptError naming what is missing when `folder` holds no tokenizer files."""
  if not os.path.isdir(folder):
    raise PromptError(f"Tokenizer folder {folder!r} does not exist.")
  present = set(os.listdir(folder))
  if any(set(files) <= present for files in TOKENIZER_FILE_SETS) or any(
      n.endswith(".tiktoken") for n in present):
    return
  halves = [f"{'+'.join(sorted(present & set(f)))} without {'+'.join(sorted(set(f) - present))}"
            for f in TOKENIZER_FILE_SETS if len(f) > 1 and present & set(f)]
  found = f" (found {'; '.join(halves)})" if halves else ""
  raise PromptError(
      f"Checkpoint folder {folder!r} has no tokenizer files (tokenizer.json, or vocab.json+merges.txt, "
      f"or tokenizer.model){found}; copy them from the original checkpoint.")


def load_tokenizer(folder: str):
  """`AutoTokenizer` from a local checkpoint folder (no network)."""
  check_tokenizer_files(folder)
  from transformers import AutoTokenizer
  try:
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)
  except (OSError, ValueError) as e:
    raise PromptError(f"Cannot load a tokenizer from {folder!r}: {e}") from e


def chat_template_of(tokenizer, folder: str | None = None) -> str:
  """The folder's chat template (tokenizer or processor files), else LLaVA-OneVision's."""
  if getattr(tokenizer, "chat_template", None):
    return tokenizer.chat_template
  if folder:
    path = os.path.join(folder, "chat_template.jinja")
    if os.path.exists(path):
      with open(path) as f:
        return f.read()
  return LLAVA_OV_CHAT_TEMPLATE


def mc_question_text(question: str, options: Sequence[str]) -> str:
  """The lmms-eval style multiple-choice text: question, lettered options, instruction."""
  if not 2 <= len(options) <= len(LETTERS):
    raise PromptError(f"A multiple-choice question needs 2 to {len(LETTERS)} options, got {len(options)}.")
  lines = [question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)] + [MC_INSTRUCTION]
  return "\n".join(lines)


@dataclasses.dataclass
class PromptEncoder:
  """Turns (question, options) into the prefix/suffix ids around the video, and the token ids that
  score the options (see ANSWER_FORMATS)."""
  tokenizer: object
  template: str = LLAVA_OV_CHAT_TEMPLATE
  answer_format: str = "letter"

  def __post_init__(self):
    if self.answer_format not in ANSWER_FORMATS:
      raise PromptError(f"answer_format={self.answer_format!r}; expected one of {ANSWER_FORMATS}.")

  @classmethod
  def from_folder(cls, folder: str, answer_format: str = "letter") -> "PromptEncoder":
    tok = load_tokenizer(folder)
    return cls(tok, chat_template_of(tok, folder), answer_format)

  def render(self, text: str) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    return self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                              add_generation_prompt=True)

  def _ids(self, text: str) -> list[int]:
    return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

  def encode(self, question: str, options: Sequence[str] | None) -> tuple[list[int], list[int]]:
    """(prefix, suffix) ids; `options=None` (or the "option_word" format) gives the open-ended prompt."""
    if options is None or self.answer_format == "option_word":
      text = f"{question}\n{OPEN_INSTRUCTION}"
    else:
      text = mc_question_text(question, options)
    rendered = self.render(text)
    if rendered.count(VIDEO_PLACEHOLDER) != 1:
      raise PromptError(f"The chat template must place exactly one {VIDEO_PLACEHOLDER!r}; got "
                        f"{rendered.count(VIDEO_PLACEHOLDER)} in {rendered!r}.")
    prefix, suffix = rendered.split(VIDEO_PLACEHOLDER)
    return self._ids(prefix), self._ids(suffix)

  def option_token_ids(self, n: int) -> np.ndarray:
    """Token id of each answer letter "A", "B", ...; each must be a single token."""
    ids = []
    for letter in LETTERS[:n]:
      tok = self._ids(letter)
      if len(tok) != 1:
        raise PromptError(f"Answer letter {letter!r} is {len(tok)} tokens for this tokenizer; need exactly 1.")
      ids.append(tok[0])
    return np.asarray(ids, np.int32)

  def option_word_ids(self, options: Sequence[Sequence[str]]) -> np.ndarray | None:
    """int32 [B, max options]: the first token id of each option ("option_word" format; a row with
    fewer options repeats its first, which never wins a tie), or None for the "letter" format, whose
    letter ids (`option_token_ids`) are the same for every sample."""
    if self.answer_format == "letter":
      return None
    width = max(len(row) for row in options)
    out = np.zeros((len(options), width), np.int32)
    for i, row in enumerate(options):
      ids = []
      for option in row:
        tok = self._ids(option) or self._ids(" " + option)
        if not tok:
          raise PromptError(f"Option {option!r} has no tokens.")
        ids.append(tok[0])
      out[i] = ids + [ids[0]] * (width - len(ids))
    return out

  def encode_batch(self, questions: Sequence[str], options: Sequence[Sequence[str] | None], suffix_len: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prefix [B, Lp], suffix right-padded to [B, suffix_len], true suffix lengths [B]).

    An entry of `options` that is None gives that sample the open-ended prompt."""
    prefixes, suffixes = zip(*(self.encode(q, o) for q, o in zip(questions, options)))
    if len({tuple(p) for p in prefixes}) != 1:
      raise PromptError("All prompts in a batch must share the same prefix before the video.")
    lengths = np.asarray([len(s) for s in suffixes], np.int32)
    if lengths.max() > suffix_len:
      raise PromptError(f"A prompt needs {lengths.max()} suffix tokens; suffix_len is {suffix_len}.")
    pad = getattr(self.tokenizer, "pad_token_id", None) or 0
    suffix = np.full((len(suffixes), suffix_len), pad, np.int32)
    for i, s in enumerate(suffixes):
      suffix[i, :len(s)] = s
    prefix = np.asarray([prefixes[0]] * len(prefixes), np.int32).reshape(len(prefixes), -1)
    return prefix, suffix, lengths
