"""The on-disk dataset format for image question answering: one JSON object per line of a `.jsonl` file.

    {"id": "coco-17", "image": "images/000017.jpg", "question": "What is on the table?",
     "options": ["A cup.", "A cat.", "A phone.", "A book."], "answer": 0}

Fields as in `score_jax.data.jsonl_format` (same validation, reason codes, `ProblemLog`, `strict`),
with `image` in place of `video` and no time window:
- `image` (required): path of a PNG/JPEG (any format PIL reads), relative to the folder of the
  `.jsonl` file (an absolute path is used as is); read as RGB.
- `question`, `options` (required): as for videos.
- `answer` (required): the option index (0 for `options[0]`, ...) or its letter ("A", "(b)", ...).
- `id` (optional): default `line<N>`; anything else is kept in `ImageSample.meta`.
- `task` (optional): the prompt the `lmms_eval` prompt style gives it; default "image_mcq"
  (lmms-eval's image multiple-choice text, `score_jax.protocol.lmms_eval_prompts.image_mcq_text`).

A record whose image file does not exist is skipped (`missing_image`); one that PIL cannot read is
skipped where it is opened (`unreadable_image`, see `image_pseudo_video.read_image`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from score_jax.data import jsonl_format as jf
from score_jax.protocol.lmms_eval_prompts import IMAGE_TASK

KNOWN_FIELDS = ("id", "image", "question", "options", "answer")
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"


@dataclasses.dataclass(frozen=True)
class ImageSample:
  """One validated multiple-choice question about an image."""
  id: str
  image: str                  # absolute path
  question: str
  options: tuple[str, ...]
  answer: int                 # index into options
  source: str = ""            # "file.jsonl:LINE", for messages
  meta: dict = dataclasses.field(default_factory=dict, compare=False)

  @property
  def answer_letter(self) -> str:
    return jf.LETTERS[self.answer]


def answer_of(answer: Any, num_options: int) -> int:
  """The option index an answer names: an int index or a letter (`jf.answer_index`); `BadSample` if none."""
  if isinstance(answer, bool) or not isinstance(answer, (int, str)):
    raise jf.BadSample(jf.BAD_FIELD, f"field 'answer' must be an option index or letter, got {answer!r}")
  if isinstance(answer, str):
    return jf.answer_index(answer, num_options)
  if not 0 <= answer < num_options:
    raise jf.BadSample(jf.ANSWER_NOT_IN_OPTIONS,
                       f"answer {answer} is not among the options (indices 0 to {num_options - 1})")
  return answer


def parse_image_record(rec: Any, root: str, default_id: str, source: str = "") -> ImageSample:
  """Validates one decoded JSON object and returns an `ImageSample`; raises `jf.BadSample`."""
  sid = jf.id_field(rec, default_id)
  image = jf.text_field(rec, "image")
  question = jf.text_field(rec, "question")
  options = jf.options_field(rec)
  if "answer" not in rec:
    raise jf.BadSample(jf.MISSING_FIELD, "missing field 'answer'")
  answer = answer_of(rec["answer"], len(options))
  meta = {k: v for k, v in rec.items() if k not in KNOWN_FIELDS}
  meta.setdefault("task", IMAGE_TASK)  # the lmms_eval prompt style's image multiple-choice text
  return ImageSample(sid, jf.resolve_video(image, root), question, options, answer, source, meta)


def _image_exists(s: ImageSample) -> None:
  if not os.path.isfile(s.image):
    raise jf.BadSample(MISSING_IMAGE, f"image file {s.image} does not exist", s.id)


def read_image_jsonl(path: str, strict: bool = False, problems: jf.ProblemLog | None = None) -> jf.JsonlDataset:
  """Reads and validates an image QA JSONL file; bad lines (and missing images) are skipped (warned,
  counted) or, if strict, raised. Logs the summary line."""
  return jf.read_records(path, parse_image_record, _image_exists, strict, problems)
