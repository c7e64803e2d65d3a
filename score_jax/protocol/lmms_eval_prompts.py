"""lmms-eval's LLaVA-OneVision prompts: each benchmark's question text and the `qwen_1_5` chat turn.

Read from lmms-eval (github.com/EvolvingLMMs-Lab/lmms-eval) at commit `LMMS_EVAL_COMMIT` and from
LLaVA-NeXT (github.com/LLaVA-VL/LLaVA-NeXT, whose `llava` package the lmms-eval wrapper imports) at
`LLAVA_NEXT_COMMIT`. lmms-eval builds a video multiple-choice prompt in three steps:

1. the task's `doc_to_text(doc, lmms_eval_specific_kwargs)` (`lmms_eval/tasks/<task>/utils.py`) turns
   the dataset row into the question text, with the yaml's `lmms_eval_specific_kwargs` ("default"
   entry: none of the four tasks has a `llava_onevision` entry);
2. the `llava_onevision` wrapper (`lmms_eval/models/simple/llava_onevision.py`, `generate_until`,
   `token_strategy="single"`) puts one `<image>` placeholder for the whole video on its own line
   before it: `"<image>" + "\\n" + context`;
3. the `qwen_1_5` conversation (`llava/conversation.py: conv_qwen`, `SeparatorStyle.CHATML`) wraps it:
   system turn, user turn, and an open assistant turn (`append_message(roles[1], None)`).

Our JSONL records hold the question and its options separately, without letter prefixes; the
functions below put them back the way each benchmark's dataset row holds them.
"""
from __future__ import annotations

from typing import Callable, Sequence

LMMS_EVAL_COMMIT = "75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3"
LLAVA_NEXT_COMMIT = "df179663ae8b83207df100a1f7af24caec633ff9"

# The values of a JSONL record's `task` key that have an lmms-eval prompt.
TASKS = ("videomme", "mlvu", "longvideobench", "nextqa")
LETTERS = "ABCDEFGHIJ"

# llava/constants.py: DEFAULT_IMAGE_TOKEN; one per video (llava_onevision.py, token_strategy="single").
IMAGE_PLACEHOLDER = "<image>"

# llava/conversation.py: conv_qwen (registered as "qwen_1_5"; the wrapper's default conv_template).
QWEN_1_5_SYSTEM = "<|im_start|>system\nYou are a helpful assistant."
QWEN_1_5_ROLES = ("<|im_start|>user", "<|im_start|>assistant")
QWEN_1_5_SEP = "<|im_end|>"


class LmmsEvalPromptError(ValueError):
  """A sample that has no lmms-eval prompt (unknown task, too many options)."""


def render_qwen_1_5(user_message: str) -> str:
  """`Conversation.get_prompt()` of conv_qwen after one user message and the open assistant turn
  (llava/conversation.py, SeparatorStyle.CHATML: system + sep + "\\n", then role + "\\n" + message +
  sep + "\\n" per message, and role + "\\n" for the message None)."""
  return (QWEN_1_5_SYSTEM + QWEN_1_5_SEP + "\n"
          + QWEN_1_5_ROLES[0] + "\n" + user_message + QWEN_1_5_SEP + "\n"
          + QWEN_1_5_ROLES[1] + "\n")


def video_message(context: str) -> str:
  """The user message for a video: `image_tokens + "\\n" + context` with one placeholder
  (lmms_eval/models/simple/llava_onevision.py, generate_until)."""
  return IMAGE_PLACEHOLDER + "\n" + context


def _lettered(options: Sequence[str], form: str) -> list[str]:
  if len(options) > len(LETTERS):
    raise LmmsEvalPromptError(f"{len(options)} options; at most {len(LETTERS)} have letters.")
  return [form.format(letter=LETTERS[i], option=o) for i, o in enumerate(options)]


# ------------------------------------------------------------------------------------ VideoMME
# lmms_eval/tasks/videomme/utils.py: videomme_doc_to_text, `option_prompt`.
VIDEOMME_INSTRUCTION = ("Select the best answer to the following multiple-choice question based on the video "
                        "and the subtitles. Respond with only the letter (A, B, C, or D) of the correct option.")
# lmms_eval/tasks/videomme/videomme.yaml: lmms_eval_specific_kwargs.default.post_prompt.
VIDEOMME_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def videomme_text(question: str, options: Sequence[str]) -> str:
  """videomme_doc_to_text: option_prompt + "\\n" + question + "\\n" + options + "\\n" + post_prompt, where
  the Video-MME rows' options already read "A. text" and are joined by "\\n"."""
  return "\n".join([VIDEOMME_INSTRUCTION, question, *_lettered(options, "{letter}. {option}"),
                    VIDEOMME_POST_PROMPT])


# ------------------------------------------------------------------------------------ MLVU
# lmms_eval/tasks/mlvu/mlvu_dev.yaml: lmms_eval_specific_kwargs.default (pre_prompt is "").
MLVU_PRE_PROMPT = ""
MLVU_POST_PROMPT = "\nOnly give the best option.\nBest option: ("
# The MLVU_dev rows hold the options inside `question`, one "(A) text" line each after the stem.
MLVU_OPTION_FORM = "({letter}) {option}"


def mlvu_question(stem: str, options: Sequence[str]) -> str:
  """The MLVU_dev `question` field: the stem, then one "(A) text" line per option."""
  return "\n".join([stem, *_lettered(options, MLVU_OPTION_FORM)])


def split_mlvu_question(text: str) -> tuple[str, list[str]]:
  """(stem, options) of an MLVU_dev `question` field; the exact inverse of `mlvu_question` (the stem is
  everything before the line "(A) ...", kept verbatim)."""
  lines = text.split("\n")
  first = next((i for i, line in enumerate(lines) if line.startswith("(A) ")), None)
  if first is None or first == 0:
    raise LmmsEvalPromptError(f"MLVU question {text[:80]!r} has no stem followed by '(A) ...' option lines.")
  options = []
  for i, line in enumerate(lines[first:]):
    head = f"({LETTERS[i]}) " if i < len(LETTERS) else None
    if head is None or not line.startswith(head):
      raise LmmsEvalPromptError(f"MLVU question {text[:80]!r}: line {line!r} is not option {head!r}.")
    options.append(line[len(head):])
  return "\n".join(lines[:first]), options


def mlvu_text(question: str, options: Sequence[str]) -> str:
  """mlvu_doc_to_text: pre_prompt + doc["question"] + post_prompt."""
  return MLVU_PRE_PROMPT + mlvu_question(question, options) + MLVU_POST_PROMPT


# ------------------------------------------------------------------------------------ LongVideoBench
# lmms_eval/tasks/longvideobench/longvideobench_val_v.yaml: lmms_eval_specific_kwargs.default.
LONGVIDEOBENCH_PRE_PROMPT = ""
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"


def longvideobench_text(question: str, options: Sequence[str]) -> str:
  """longvideobench_doc_to_text (no interleaved subtitles): f"{pre_prompt}{question}\\n{post_prompt}" with
  question = doc["question"] + "\\n" + the non-"N/A" candidates as "A. text" lines."""
  full_question = "\n".join([question, *_lettered(options, "{letter}. {option}")])
  return f"{LONGVIDEOBENCH_PRE_PROMPT}{full_question}\n{LONGVIDEOBENCH_POST_PROMPT}"


# ------------------------------------------------------------------------------------ NExT-QA
# lmms_eval/tasks/nextqa/nextqa_mc_test.yaml has no lmms_eval_specific_kwargs: no pre/post prompt.
def nextqa_text(question: str, options: Sequence[str]) -> str:
  """nextqa_doc_to_text_mc: the stripped question, then "A. a0" ... lines (each option stripped)."""
  return "\n".join([question.strip(), *_lettered([o.strip() for o in options], "{letter}. {option}")])


# ------------------------------------------------------------------------------------ image QA (stage 1)
# Not a video benchmark: the `images:N` curriculum stage's image questions (score_jax/data/image_qa_format.py
# gives its records this task unless they name another). lmms-eval's image multiple-choice format:
# lmms_eval/tasks/ai2d/ai2d.yaml (lmms_eval_specific_kwargs.default: prompt_format "mcq", pre_prompt "")
# and lmms_eval/tasks/ai2d/utils.py: ai2d_doc_to_text.
IMAGE_TASK = "image_mcq"
IMAGE_MCQ_POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."


def image_mcq_text(question: str, options: Sequence[str]) -> str:
  """ai2d_doc_to_text ("mcq"): f"{pre_prompt}{question}\n{choices_str}{post_prompt}", the choices as
  "A. text" lines joined by "\n"."""
  return f"{question}\n" + "\n".join(_lettered(options, "{letter}. {option}")) + IMAGE_MCQ_POST_PROMPT


TASK_TEXT: dict[str, Callable[[str, Sequence[str]], str]] = {
    "videomme": videomme_text, "mlvu": mlvu_text, "longvideobench": longvideobench_text, "nextqa": nextqa_text,
    IMAGE_TASK: image_mcq_text}
PROMPT_TASKS = tuple(TASK_TEXT)  # TASKS (the video benchmarks) and IMAGE_TASK


def question_text(task: str, question: str, options: Sequence[str]) -> str:
  """The context lmms-eval's `doc_to_text` gives for `task` (one of PROMPT_TASKS)."""
  if task not in TASK_TEXT:
    raise LmmsEvalPromptError(f"task {task!r} has no lmms-eval prompt; expected one of {PROMPT_TASKS}.")
  return TASK_TEXT[task](question, options)


def render(task: str, question: str, options: Sequence[str]) -> str:
  """The whole text lmms-eval's llava_onevision wrapper tokenizes for a video multiple-choice question,
  with the single `IMAGE_PLACEHOLDER` where the video's tokens go."""
  return render_qwen_1_5(video_message(question_text(task, question, options)))
