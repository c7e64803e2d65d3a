"""lmms-eval's answer parsers: generated text -> the option it names, per benchmark task.

Re-implemented from lmms-eval at commit `lmms_eval_prompts.LMMS_EVAL_COMMIT` (the algorithms, quirks
included, so that a generated answer scores as lmms-eval scores it):
- videomme, mlvu: `extract_mcq_answer(s, choices=["A", "B", "C", "D"])`
  (lmms_eval/tasks/_task_utils/mcq_extract.py, called by videomme/utils.py and mlvu/utils.py);
- longvideobench: `parse_multi_choice_response` (lmms_eval/tasks/longvideobench/utils.py);
- nextqa: the MMMU-style `parse_multi_choice_response` (lmms_eval/tasks/nextqa/utils.py).

`parse_answer` returns the option index, or None when the text names no option, or names a letter
beyond the sample's `num_options` (lmms-eval scores both as wrong, except that for the tasks in
`RANDOM_FALLBACK_TASKS` it replaces an unparseable answer by `random.choice` of the letters).
"""
from __future__ import annotations

import re
from typing import Sequence

from score_jax.protocol.lmms_eval_prompts import LETTERS, TASKS

# Tasks whose lmms-eval parser draws a random letter when nothing parses (we return None instead).
RANDOM_FALLBACK_TASKS = ("longvideobench", "nextqa")

# ---------------------------------------------------------------- mcq_extract.extract_mcq_answer
# lmms_eval/tasks/_task_utils/mcq_extract.py: _ANSWER_PHRASES, in order (the first found counts).
MCQ_ANSWER_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is",
    "best answer is", "the correct option is", "correct option is", "the best option is", "best option is",
    "the choice is", "choice is", "the correct choice is", "correct choice is", "i choose", "i select",
    "i pick", "my answer is", "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは")
# _FORMAT_PRIORITY: higher wins; within a format the later position wins.
MCQ_FORMAT_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4,
                       "right_paren": 3, "space": 2, "fallback": 0}
# videomme/utils.py and mlvu/utils.py: extract_characters_regex passes choices A-D.
MCQ_CHOICES = ("A", "B", "C", "D")


def extract_mcq_answer(response: str, choices: Sequence[str] = MCQ_CHOICES) -> str:
  """The choice letter lmms-eval's `extract_mcq_answer` reads from `response` ("" if none)."""
  if not response or not response.strip():
    return ""
  text = response.strip()
  for char in ",.!?;:'\"":
    text = text.strip(char)
  text = f" {text} "
  found: list[tuple[str, int, str]] = []  # (letter, position, format), in lmms-eval's order
  for form, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})"),
                        ("space", "{} ")):
    found += [(ch, text.rfind(pattern.format(ch)), form) for ch in choices if pattern.format(ch) in text]
  lower = text.lower()
  for phrase in MCQ_ANSWER_PHRASES:
    at = lower.find(phrase)
    if at != -1:
      found += [(ch, text.find(ch, at + len(phrase)), "phrase") for ch in choices
                if text.find(ch, at + len(phrase)) != -1]
  stripped = text.strip()
  found += [(ch, 0, "start") for ch in choices
            if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha())]
  found += [(ch, len(text) - 1, "end") for ch in choices
            if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha())]
  if not found:
    found = [(ch, text.rfind(ch), "fallback") for ch in choices if ch in text]
  if not found:
    return ""
  # A stable descending sort's first element: the first of the maximal (priority, position) keys.
  return max(found, key=lambda c: (MCQ_FORMAT_PRIORITY[c[2]], c[1]))[0]


# ---------------------------------------------------------------- longvideobench
# lmms_eval/tasks/longvideobench/utils.py: parse_multi_choice_response, answer_prefixes (removed in order).
LONGVIDEOBENCH_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer",
                           "The best option is", "The correct option is", "Best answer:", "Best option:")


def longvideobench_letter(response: str) -> str:
  """The letter LongVideoBench's parser reads ("" where it would draw a random letter)."""
  s = response.strip()
  for prefix in LONGVIDEOBENCH_PREFIXES:
    s = s.replace(prefix, "")
  match = re.search("[ABCDE]", s)  # more than 10 words without A-E: also no match, hence random
  return match[0] if match else ""


# ---------------------------------------------------------------- nextqa (MMMU style)
def nextqa_letter(response: str, choices: Sequence[str], options: Sequence[str] | None = None) -> str:
  """The letter NExT-QA's MMMU-style parser reads ("" where it would draw a random letter). With
  `options` (the option texts) a long answer that quotes an option's text names that option."""
  for char in ",.!?;:'":
    response = response.strip(char)
  response = f" {response} "
  candidates = [ch for ch in choices if f"({ch})" in response]
  with_brackets = bool(candidates)
  if not candidates:
    candidates = [ch for ch in choices if f"{ch} " in response]
  if not candidates:
    candidates = [ch for ch in choices if f"{ch}." in response]
  by_letter = True
  if not candidates and len(response.split()) > 5 and options is not None:
    answers = dict(zip(choices, (o.strip() for o in options)))
    candidates = [ch for ch, ans in answers.items() if ans.lower() in response.lower()]
    by_letter = False
  if not candidates:
    return ""
  if len(candidates) == 1:
    return candidates[0]
  if not by_letter:
    starts = [response.lower().rfind(answers[ch].lower()) for ch in candidates]
  elif with_brackets:
    starts = [response.rfind(f"({ch})") for ch in candidates]
  else:
    starts = [response.rfind(f" {ch} ") for ch in candidates]
  return candidates[starts.index(max(starts))]  # np.argmax: the first of the maxima


def parse_answer(task: str, text: str, num_options: int, options: Sequence[str] | None = None) -> int | None:
  """The option index lmms-eval's parser for `task` reads from generated `text`; None if it names none
  of the sample's `num_options` options. `options` (the option texts) only serve NExT-QA's fallback
  of matching a long answer against the option texts. The text is stripped first, as the
  llava_onevision wrapper strips its decoded outputs."""
  if task not in TASKS:
    raise ValueError(f"No lmms-eval answer parser for task {task!r}; expected one of {TASKS}.")
  if not 1 <= num_options <= len(LETTERS):
    raise ValueError(f"num_options={num_options} must be in 1..{len(LETTERS)}.")
  if options is not None and len(options) != num_options:
    raise ValueError(f"{len(options)} option texts for num_options={num_options}.")
  text = text.strip()
  if task in ("videomme", "mlvu"):
    letter = extract_mcq_answer(text, MCQ_CHOICES)
  elif task == "longvideobench":
    letter = longvideobench_letter(text)
  else:
    letter = nextqa_letter(text, LETTERS[:num_options], options)
  index = LETTERS.find(letter) if letter else -1
  return index if 0 <= index < num_options else None
