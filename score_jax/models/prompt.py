"""Tokenizer, chat template and the LLaVA-OneVision multiple-choice prompt.

The tokenizer (and a chat template, if the folder has one) come from the checkpoint folder through
`transformers.AutoTokenizer`; nothing is downloaded. A prompt is rendered with the chat template,
cut at the single `<video>` placeholder, and returned as (prefix ids, suffix ids): the model inserts
the (kept) visual tokens and the closing `image_newline` between the two (see `prefill.py`). The
"lmms_eval" style (PROMPT_STYLES) renders lmms-eval's own text instead, cut at its `<image>`.
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
# The text around the question (`config.model.prompt_style`):
#   "hf_chat_template": the checkpoint's own chat template (LLAVA_OV_CHAT_TEMPLATE if it has none);
#   "lmms_eval":        the exact text lmms-eval feeds LLaVA-OneVision for each sample's benchmark task
#                       (`score_jax.protocol.lmms_eval_prompts`: per-task question text, qwen_1_5 turns).
PROMPT_STYLES = ("hf_chat_template", "lmms_eval")
DEFAULT_PROMPT_STYLE = "hf_chat_template"

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
  style: str = DEFAULT_PROMPT_STYLE  # see PROMPT_STYLES

  def __post_init__(self):
    if self.answer_format not in ANSWER_FORMATS:
      raise PromptError(f"answer_format={self.answer_format!r}; expected one of {ANSWER_FORMATS}.")
    if self.style not in PROMPT_STYLES:
      raise PromptError(f"prompt_style={self.style!r}; expected one of {PROMPT_STYLES}.")
    if self.style == "lmms_eval" and self.answer_format != "letter":
      raise PromptError(f"prompt_style='lmms_eval' shows lettered options as lmms-eval does; it needs "
                        f"answer_format='letter', not {self.answer_format!r}.")

  @classmethod
  def from_folder(cls, folder: str, answer_format: str = "letter", style: str = DEFAULT_PROMPT_STYLE
                  ) -> "PromptEncoder":
    tok = load_tokenizer(folder)
    return cls(tok, chat_template_of(tok, folder), answer_format, style)

  @property
  def placeholder(self) -> str:
    """The text that marks the video in a rendered prompt: `<video>` in the chat template, lmms-eval's
    `<image>` (one for the whole video) in the lmms_eval style."""
    if self.style == "lmms_eval":
      from score_jax.protocol import lmms_eval_prompts
      return lmms_eval_prompts.IMAGE_PLACEHOLDER
    return VIDEO_PLACEHOLDER

  def render(self, text: str) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    return self.tokenizer.apply_chat_template(messages, chat_template=self.template, tokenize=False,
                                              add_generation_prompt=True)

  def _ids(self, text: str) -> list[int]:
    return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

  def render_prompt(self, question: str, options: Sequence[str] | None, task: str | None = None,
                    sample: str | None = None) -> str:
    """The whole prompt text with its one video placeholder. `options=None` (or the "option_word"
    format) gives the open-ended prompt; the lmms_eval style needs the sample's benchmark `task`
    (`sample` names the sample in errors)."""
    if self.style == "lmms_eval":
      from score_jax.protocol import lmms_eval_prompts as lp
      who = f"Sample {sample}" if sample else "A sample"
      if task not in lp.PROMPT_TASKS:
        raise PromptError(
            f"{who} has task {task!r}; prompt_style='lmms_eval' needs its JSONL record's 'task' to be one of "
            f"{lp.PROMPT_TASKS} (the benchmark converters set it; rebuild a feature cache made before the field with "
            "`python -m score_jax.cache`), or use --config.model.prompt_style=hf_chat_template.")
      if options is None:
        raise PromptError(f"{who}: prompt_style='lmms_eval' renders multiple-choice questions only (no options given).")
      try:
        return lp.render(task, question, options)
      except lp.LmmsEvalPromptError as e:
        raise PromptError(f"{who}: {e}") from None
    if options is None or self.answer_format == "option_word":
      text = f"{question}\n{OPEN_INSTRUCTION}"
    else:
      text = mc_question_text(question, options)
    return self.render(text)

  def encode(self, question: str, options: Sequence[str] | None, task: str | None = None,
             sample: str | None = None) -> tuple[list[int], list[int]]:
    """(prefix, suffix) ids of `render_prompt`, split at the video placeholder."""
    rendered = self.render_prompt(question, options, task, sample)
    mark = self.placeholder
    if rendered.count(mark) != 1:
      raise PromptError(f"The prompt must hold exactly one {mark!r}; got {rendered.count(mark)} in {rendered!r}.")
    prefix, suffix = rendered.split(mark)
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

  def encode_batch(self, questions: Sequence[str], options: Sequence[Sequence[str] | None], suffix_len: int,
                   tasks: Sequence[str | None] | None = None, sample_ids: Sequence[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prefix [B, Lp], suffix right-padded to [B, suffix_len], true suffix lengths [B]).

    An entry of `options` that is None gives that sample the open-ended prompt; `tasks` are the
    samples' benchmark tasks (the lmms_eval style needs them), `sample_ids` name them in errors."""
    tasks = list(tasks) if tasks is not None else [None] * len(questions)
    names = [repr(str(i)) for i in sample_ids] if sample_ids is not None else [
        f"#{i} of the batch ({q[:40]!r})" for i, q in enumerate(questions)]
    prefixes, suffixes = zip(*(self.encode(q, o, t, n) for q, o, t, n in zip(questions, options, tasks, names)))
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
