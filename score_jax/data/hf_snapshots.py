"""Converters for the Hugging Face snapshots of the benchmarks that lmms-eval reads.

    huggingface-cli download lmms-lab/Video-MME --repo-type dataset --local-dir ~/data/videomme
    (unzip the video archives into the same folder, as lmms-eval does into $HF_HOME/videomme)
    python -m score_jax.data.benchmark_layouts --layout videomme_hf --src ~/data/videomme --out videomme.jsonl

`--src` is the snapshot folder (or its annotation parquet); `--videos` is the folder its video
archives were extracted to (lmms-eval's `$HF_HOME/<dataset_kwargs.cache_dir>`), by default the
snapshot folder. Videos are found as lmms-eval's `doc_to_visual` builds their paths, matching the
extension case-insensitively. The paths, columns and categories below follow lmms-eval
@75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3 (github.com/EvolvingLMMs-Lab/lmms-eval), file by file:

- videomme_hf (lmms-eval's `lmms-eval/Video-MME`, formerly `lmms-lab/Video-MME`; tasks/videomme):
  `videomme/test-*.parquet` rows {videoID, question_id, question, options ["A. ...", ...], answer
  "C", duration, domain, sub_category, task_type}; video `<videos>/data/<videoID>.mp4` (`.MP4`, `.mkv`).
- mlvu_hf (`sy1998/MLVU_dev`; tasks/mlvu, mlvu_dev.yaml): `mlvu/test-*.parquet` rows {video_name,
  question "text\\n(A) opt\\n(B) opt...", candidates, answer "B", task_type, duration, question_id};
  video `<videos>/<video_name>`. The question is split at its "(A) ..." lines into the stem and the
  options, verbatim (`lmms_eval_prompts.split_mlvu_question`, so the lmms_eval prompt style rebuilds
  lmms-eval's text exactly); the candidates column is used when the question holds none.
- longvideobench_hf (`longvideobench/LongVideoBench`; tasks/longvideobench, longvideobench_val_v.yaml):
  `validation-*.parquet` rows {id, video_path, question, option0..option4 (padded with "N/A", which
  is dropped), correct_choice (index), duration_group, question_category, ...}; video
  `<videos>/videos/<video_path>`, the whole video (lmms-eval's video task uses no time window).
- nextqa_hf (`lmms-eval/NExTQA`, config MC; tasks/nextqa, nextqa_mc_test.yaml): `MC/test-*.parquet`
  rows {video, qid, question, a0..a4, answer (index), type}; video `<videos>/NExTVideo/<video>.mp4`.

Every record gets `task` ("videomme", "mlvu", "longvideobench", "nextqa") and the category fields
of `benchmark_tasks.META_FIELDS`.
"""
from __future__ import annotations

import glob
import json
import os
import re
from typing import Callable, Iterable

from absl import logging

from score_jax.data import annotation_io as aio
from score_jax.data import benchmark_tasks as bt
from score_jax.data import jsonl_format as jf
from score_jax.data.video_files import find_video
from score_jax.protocol import lmms_eval_prompts as lp

# Where each snapshot keeps its annotation parquet (the first pattern that matches wins).
TABLES = {"videomme_hf": ("videomme/test-*.parquet", "videomme/*.json*", "*.parquet"),
          "mlvu_hf": ("mlvu/test-*.parquet", "**/test-*.parquet"),
          "longvideobench_hf": ("validation-*.parquet", "**/validation-*.parquet"),
          "nextqa_hf": ("MC/test-*.parquet", "**/MC/*test*.parquet")}
_EMBEDDED_OPTION = re.compile(r"^\(([A-J])\)\s?(.*)$")
LVB_PADDING = "N/A"  # longvideobench_doc_to_text drops options equal to it


def snapshot_tables(layout: str, src: str) -> tuple[list[str], str]:
  """(annotation files, snapshot root) of `src`, a snapshot folder or one of its annotation files."""
  patterns = TABLES[layout]
  if os.path.isfile(src):
    depth = patterns[0].count("/")  # the file sits that many folders below the snapshot root
    root = os.path.dirname(os.path.abspath(src))
    for _ in range(depth):
      root = os.path.dirname(root)
    return [src], root
  if not os.path.isdir(src):
    raise aio.LayoutError(f"{src} does not exist (expected the {layout} snapshot folder or its parquet file).")
  for pattern in patterns:
    files = sorted(glob.glob(os.path.join(src, pattern), recursive=True))
    if files:
      return files, src
  raise aio.LayoutError(f"{src}: no {' or '.join(patterns)} annotation file (is this the {layout} snapshot?).")


def _rows(layout: str, src: str, videos: str | None):
  """(source "file:ROW", row index, row) of every annotation row, and the videos folder."""
  files, root = snapshot_tables(layout, src)
  videos = videos or root
  return videos, ((f"{path}:{i + 1}", i, row) for path in files for i, row in enumerate(aio.read_table(path)))


def videomme_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  videos, rows = _rows("videomme_hf", src, videos)
  for source, i, row in rows:
    def make(row=row, i=i):
      vid, question, options, answer = aio.need(row, "videoID", "question", "options", "answer")
      if isinstance(options, str):
        options = json.loads(options) if options.strip().startswith("[") else options.split("\n")
      return {"id": str(row.get("question_id") or f"{vid}-{i}"),
              # videomme_doc_to_visual: <cache_dir>/data/<videoID>.mp4, else .MP4, else .mkv
              "video": find_video(os.path.join(videos, "data"), f"{vid}.mp4"),
              "question": str(question), "options": [aio.strip_letter(str(o), j) for j, o in enumerate(options)],
              "answer": str(answer).strip(), "task": bt.VIDEOMME, **aio.keep_fields(row, bt.META_FIELDS[bt.VIDEOMME])}
    yield source, make


def split_embedded_options(text: str) -> tuple[str, list[str]]:
  """"What?\\n(A) x\\n(B) y" -> ("What?", ["x", "y"]), leniently (surrounding spaces, a trailing newline);
  options must run A, B, C, ... at the end."""
  lines = text.rstrip().split("\n")
  found = []
  while lines and (m := _EMBEDDED_OPTION.match(lines[-1].strip())):
    found.insert(0, (m.group(1), m.group(2).strip()))
    lines.pop()
  letters = "".join(letter for letter, _ in found)
  if letters != jf.LETTERS[:len(found)]:
    raise jf.BadSample(jf.BAD_FIELD, f"the options in the question are lettered {letters!r}, not A, B, C, ...")
  return "\n".join(lines).strip(), [o for _, o in found]


def _answer_letter(answer, options: list[str]) -> str:
  """A letter answer ("B", "(B)", "B.") as is; else the text of one of the options."""
  text = str(answer).strip()
  m = re.fullmatch(r"\(?([A-J])\)?\.?", text)
  if m:
    return m.group(1)
  if text in options:
    return jf.LETTERS[options.index(text)]
  raise jf.BadSample(jf.ANSWER_NOT_IN_OPTIONS, f"answer {answer!r} is neither a letter nor one of the options")


def mlvu_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  videos, rows = _rows("mlvu_hf", src, videos)
  for source, i, row in rows:
    def make(row=row, i=i, source=source):
      name, text, answer = aio.need(row, "video_name", "question", "answer")
      try:  # the exact inverse of the lmms_eval prompt style's MLVU text: the prompt is lmms-eval's
        question, options = lp.split_mlvu_question(str(text))
      except lp.LmmsEvalPromptError:
        question, options = split_embedded_options(str(text))
        logging.warning("%s: the MLVU question is not a stem then exact '(A) text' lines; split leniently "
                        "(its lmms_eval prompt may differ from lmms-eval's).", source)
      if not options:  # no "(A) ..." lines: the candidates column
        options = [str(c).strip() for c in (row.get("candidates") or [])]
      return {"id": str(row.get("question_id") or f"mlvu-{i}"),
              "video": find_video(videos, str(name)),  # mlvu_doc_to_visual_dev: <cache_dir>/<video_name>
              "question": question, "options": options, "answer": _answer_letter(answer, options),
              "task": bt.MLVU, **aio.keep_fields(row, bt.META_FIELDS[bt.MLVU])}
    yield source, make


def lvb_options(row: dict) -> list[str]:
  """option0..option4 without the "N/A" padding (longvideobench_doc_to_text); padding must come last."""
  raw = [row.get(f"option{j}") for j in range(5)]
  kept = [str(o) for o in raw if o is not None and o != LVB_PADDING]
  if [str(o) for o in raw[:len(kept)]] != kept:
    raise jf.BadSample(jf.BAD_FIELD, f"options {raw} have padding ({LVB_PADDING!r} or none) before a real option")
  return kept


def longvideobench_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  videos, rows = _rows("longvideobench_hf", src, videos)
  for source, i, row in rows:
    def make(row=row, i=i):
      if row.get("correct_choice") is None:
        raise jf.BadSample(jf.MISSING_FIELD, "no 'correct_choice' (the test split has no answers)")
      path, question, choice = aio.need(row, "video_path", "question", "correct_choice")
      options = lvb_options(row)
      return {"id": str(row.get("id") or f"lvb-{i}"),
              # longvideobench_doc_to_visual_v: <cache_dir>/videos/<video_path>
              "video": find_video(os.path.join(videos, "videos"), str(path)),
              "question": str(question), "options": options, "answer": aio.letter(choice, len(options)),
              "task": bt.LONGVIDEOBENCH, **aio.keep_fields(row, bt.META_FIELDS[bt.LONGVIDEOBENCH])}
    yield source, make


def nextqa_record(row: dict, video_path: str) -> dict:
  """One NExT-QA MC row (question and a0..a4 stripped, as nextqa_doc_to_text_mc does) as a record."""
  video, question, answer = aio.need(row, "video", "question", "answer")
  options = [row.get(f"a{j}") for j in range(5)]
  if any(o in (None, "") for o in options):
    raise jf.BadSample(jf.MISSING_FIELD, "NExT-QA rows need options a0..a4")
  return {"id": f"{video}_{row.get('qid')}", "video": video_path, "question": str(question).strip(),
          "options": [str(o).strip() for o in options], "answer": aio.letter(answer, len(options)),
          "task": bt.NEXTQA, **aio.keep_fields(row, bt.META_FIELDS[bt.NEXTQA])}


def nextqa_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  videos, rows = _rows("nextqa_hf", src, videos)
  for source, i, row in rows:
    def make(row=row, i=i):
      row = dict(row, qid=row.get("qid", i))
      # nextqa_doc_to_visual: get_video(<cache_dir>/NExTVideo, video) tries <video>.mp4 and .MP4
      return nextqa_record(row, find_video(os.path.join(videos, "NExTVideo"), f"{row.get('video')}.mp4"))
    yield source, make


LAYOUTS = {"videomme_hf": videomme_records, "mlvu_hf": mlvu_records, "longvideobench_hf": longvideobench_records,
           "nextqa_hf": nextqa_records}
