"""Converters from the public layouts of video QA benchmarks (local, already downloaded) to the JSONL format.

    python -m score_jax.data.benchmark_layouts --layout videomme --src ~/data/Video-MME --out videomme.jsonl
    python -m score_jax.data.benchmark_layouts --layout nextqa --src ~/data/NExTQA/val.csv \\
        --videos ~/data/NExTQA/NExTVideo --map ~/data/NExTQA/map_vid_vidorID.json --out nextqa_val.jsonl

Expected inputs (`--src` is the benchmark's root folder or its annotation file; `--videos` overrides
where the videos are looked for). Annotation tables may be .json (a list, or a dict holding one),
.jsonl, .csv or .parquet (parquet needs `pyarrow`).

- videomme (lmms-lab/Video-MME): `videomme/test-*.parquet` (or a .json/.jsonl export of it) with
  rows {videoID, question_id, question, options: ["A. ...", "B. ...", ...], answer: "C", duration,
  domain, sub_category, task_type}; videos `data/<videoID>.mp4` next to the `videomme/` folder.
- mlvu (MLVU dev): `json/<task>.json` (e.g. `1_plotQA.json`), each a list of {video, question,
  candidates: [...], answer: <text of the right candidate>, duration, question_type}; videos
  `video/<task>/<video>`. Entries without candidates (open-ended tasks) are skipped.
- longvideobench: `lvb_val.json`, a list of {id, video_path, question, candidates: [...],
  correct_choice: <index>, duration, question_category, ...} (optional `start`/`end` seconds are
  kept); videos `videos/<video_path>`. Test files without `correct_choice` are skipped.
- nextqa (NExT-QA multiple choice): a csv (`val.csv`, `test.csv`; or the lmms-lab parquet) with
  columns video, qid, question, a0..a4, answer (index 0-4), type; `map_vid_vidorID.json`
  ({"<video>": "<folder>/<vidorID>"}, searched next to the csv if `--map` is not given); videos
  `<videos>/<folder>/<vidorID>.mp4` (default `NExTVideo/` next to the csv).

Video paths are written relative to the output file's folder. Records that cannot be converted
(no answer, an answer not among the options, a missing field) are skipped with a warning and counted
in a summary line; a video that does not exist yet is only counted (the reader skips it later).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
from typing import Callable, Iterable

from absl import logging

from score_jax.data import jsonl_format as jf

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])\s*[\.\):]\s*")


class LayoutError(ValueError):
  """Benchmark files that are not where or what the layout expects."""


# ------------------------------------------------------------------------------------ table reading

def read_table(path: str) -> list[dict]:
  """Rows of a .json / .jsonl / .csv / .parquet annotation file as dicts."""
  if not os.path.isfile(path):
    raise LayoutError(f"Annotation file {path} does not exist.")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".parquet":
    try:
      import pyarrow.parquet as pq
    except ImportError:
      raise LayoutError(f"{path}: reading parquet needs `pip install pyarrow` (or convert it to json).") from None
    return pq.read_table(path).to_pylist()
  with open(path, encoding="utf-8") as f:
    if ext == ".csv":
      return list(csv.DictReader(f))
    if ext == ".jsonl":
      return [json.loads(line) for line in f if line.strip()]
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise LayoutError(f"{path} is not valid JSON ({e}).") from e
  if isinstance(data, dict):
    lists = [v for v in data.values() if isinstance(v, list)]
    if len(lists) != 1:
      raise LayoutError(f"{path}: expected a list of records (or a dict holding exactly one list).")
    data = lists[0]
  if not isinstance(data, list):
    raise LayoutError(f"{path}: expected a list of records, got {type(data).__name__}.")
  return data


def find_video(folder: str, stem_or_name: str) -> str:
  """`folder/name` if it has an extension, else the first existing `folder/stem.<ext>` (default .mp4)."""
  path = os.path.join(folder, stem_or_name)
  if os.path.splitext(stem_or_name)[1].lower() in VIDEO_EXTENSIONS:
    return path
  for ext in VIDEO_EXTENSIONS:
    if os.path.exists(path + ext):
      return path + ext
  return path + ".mp4"


def strip_letter(option: str, index: int) -> str:
  """"B. A cup." -> "A cup." when the prefix is the option's own letter."""
  m = _LETTER_PREFIX.match(option)
  if m and m.group(1) == jf.LETTERS[index]:
    return option[m.end():].strip()
  return option.strip()


def _need(row: dict, *fields: str):
  for f in fields:
    if row.get(f) in (None, ""):
      raise jf.BadSample(jf.MISSING_FIELD, f"missing field {f!r}")
  return [row[f] for f in fields]


def _letter(index, num_options: int) -> str:
  """The letter of a 0-based answer index."""
  try:
    i = int(index)
  except (TypeError, ValueError):
    raise jf.BadSample(jf.BAD_FIELD, f"answer index {index!r} is not an integer") from None
  if not 0 <= i < min(num_options, len(jf.LETTERS)):
    raise jf.BadSample(jf.ANSWER_NOT_IN_OPTIONS, f"answer index {i} is not among the {num_options} options")
  return jf.LETTERS[i]


# ------------------------------------------------------------------------------------ layouts

def videomme_records(src: str, videos: str | None = None) -> Iterable[tuple[str, dict | Callable]]:
  if os.path.isdir(src):
    files = sorted(glob.glob(os.path.join(src, "videomme", "*.parquet")) or
                   glob.glob(os.path.join(src, "videomme", "*.json*")) or glob.glob(os.path.join(src, "*.parquet")))
    if not files:
      raise LayoutError(f"{src}: no videomme/*.parquet (or .json/.jsonl) annotation files.")
    root = src
  else:
    files, root = [src], os.path.dirname(os.path.dirname(os.path.abspath(src)))
    if not os.path.isdir(os.path.join(root, "data")):
      root = os.path.dirname(os.path.abspath(src))
  videos = videos or os.path.join(root, "data")
  for path in files:
    for i, row in enumerate(read_table(path)):
      def make(row=row):
        vid, question, options, answer = _need(row, "videoID", "question", "options", "answer")
        if isinstance(options, str):
          options = json.loads(options) if options.strip().startswith("[") else options.split("\n")
        opts = [strip_letter(str(o), j) for j, o in enumerate(options)]
        meta = {k: row[k] for k in ("duration", "domain", "sub_category", "task_type") if row.get(k) is not None}
        return {"id": str(row.get("question_id") or f"{vid}-{i}"), "video": find_video(videos, str(vid)),
                "question": question, "options": opts, "answer": str(answer).strip(), **meta}
      yield f"{path}:{i + 1}", make


def mlvu_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  json_dir = os.path.join(src, "json") if os.path.isdir(src) else os.path.dirname(os.path.abspath(src))
  files = sorted(glob.glob(os.path.join(json_dir, "*.json"))) if os.path.isdir(src) else [src]
  if not files:
    raise LayoutError(f"{src}: no json/<task>.json annotation files.")
  videos = videos or os.path.join(os.path.dirname(json_dir), "video")
  for path in files:
    task = os.path.splitext(os.path.basename(path))[0]
    for i, row in enumerate(read_table(path)):
      def make(row=row, task=task, i=i):
        if not row.get("candidates"):
          raise jf.BadSample(jf.MISSING_FIELD, "no 'candidates' (an open-ended task)")
        video, question, cands, answer = _need(row, "video", "question", "candidates", "answer")
        cands = [str(c) for c in cands]
        if str(answer) not in cands:
          raise jf.BadSample(jf.ANSWER_NOT_IN_OPTIONS, f"answer {answer!r} is not one of the candidates {cands}")
        meta = {k: row[k] for k in ("duration", "question_type") if row.get(k) is not None}
        return {"id": f"{task}-{i}", "video": os.path.join(videos, task, str(video)), "question": question,
                "options": cands, "answer": jf.LETTERS[cands.index(str(answer))], "task": task, **meta}
      yield f"{path}:{i + 1}", make


def longvideobench_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  path = os.path.join(src, "lvb_val.json") if os.path.isdir(src) else src
  videos = videos or os.path.join(os.path.dirname(os.path.abspath(path)), "videos")
  for i, row in enumerate(read_table(path)):
    def make(row=row, i=i):
      if row.get("correct_choice") is None:
        raise jf.BadSample(jf.MISSING_FIELD, "no 'correct_choice' (a test split without answers?)")
      video, question, cands, choice = _need(row, "video_path", "question", "candidates", "correct_choice")
      rec = {"id": str(row.get("id") or f"lvb-{i}"), "video": os.path.join(videos, str(video)),
             "question": question, "options": [str(c) for c in cands], "answer": _letter(choice, len(cands))}
      for k in ("start", "end"):
        if row.get(k) is not None:
          rec[k] = float(row[k])
      rec.update({k: row[k] for k in ("duration", "question_category", "topic_category", "level")
                  if row.get(k) is not None})
      return rec
    yield f"{path}:{i + 1}", make


def nextqa_records(src: str, videos: str | None = None, map_file: str | None = None
                   ) -> Iterable[tuple[str, Callable]]:
  if os.path.isdir(src):
    raise LayoutError(f"{src}: for nextqa, --src is the csv (or parquet) file, e.g. val.csv.")
  here = os.path.dirname(os.path.abspath(src))
  map_file = map_file or os.path.join(here, "map_vid_vidorID.json")
  vmap = {}
  if os.path.exists(map_file):
    with open(map_file) as f:
      vmap = {str(k): str(v) for k, v in json.load(f).items()}
  else:
    logging.warning("%s not found: NExT-QA videos are looked for as <videos>/<video>.mp4.", map_file)
  videos = videos or os.path.join(here, "NExTVideo")
  for i, row in enumerate(read_table(src)):
    def make(row=row, i=i):
      video, question, answer = _need(row, "video", "question", "answer")
      opts = [row.get(f"a{j}") for j in range(5)]
      if any(o in (None, "") for o in opts):
        raise jf.BadSample(jf.MISSING_FIELD, "NExT-QA rows need options a0..a4")
      video = str(video)
      rel = vmap.get(video, video)
      return {"id": f"{video}_{row.get('qid', i)}", "video": find_video(videos, rel),
              "question": str(question).strip(), "options": [str(o).strip() for o in opts],
              "answer": _letter(answer, len(opts)), **({"type": row["type"]} if row.get("type") else {})}
    yield f"{src}:{i + 2 if src.endswith('.csv') else i + 1}", make


LAYOUTS = {"videomme": videomme_records, "mlvu": mlvu_records, "longvideobench": longvideobench_records,
           "nextqa": nextqa_records}


def convert(layout: str, src: str, out: str, videos: str | None = None, map_file: str | None = None,
            strict: bool = False) -> dict:
  """Writes `out` (JSONL) from a benchmark's files.

  Returns {"written", "skipped", "missing_videos", "reasons" {code: count}, "problems" [str], "summary"}.
  """
  if layout not in LAYOUTS:
    raise LayoutError(f"Unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}.")
  src = os.path.abspath(os.path.expanduser(src))
  videos = os.path.abspath(os.path.expanduser(videos)) if videos else None
  kw = {"map_file": os.path.expanduser(map_file)} if layout == "nextqa" and map_file else {}
  out_dir = os.path.dirname(os.path.abspath(out))
  problems = jf.ProblemLog(strict, name=f"{layout} -> {os.path.basename(out)}")
  records, seen, missing, total = [], set(), 0, 0
  for source, make in LAYOUTS[layout](src, videos, **kw):
    total += 1
    try:
      rec = make()
      if rec["id"] in seen:
        raise jf.BadSample(jf.DUPLICATE_ID, f"id {rec['id']!r} appears twice")
      jf.parse_record(rec, out_dir, rec["id"], source)
    except jf.BadSample as e:
      problems.add(jf.SampleProblem(source, "", e.reason, str(e)))
      continue
    except (ValueError, TypeError, KeyError) as e:
      problems.add(jf.SampleProblem(source, "", jf.BAD_FIELD, f"cannot convert ({e!r})"))
      continue
    seen.add(rec["id"])
    missing += not os.path.exists(rec["video"])
    rel = os.path.relpath(rec["video"], out_dir)
    rec["video"] = rec["video"] if rel.startswith("..") else rel  # inside the output folder: portable
    records.append(rec)
  jf.write_jsonl(records, out)
  summary = problems.summary(total) + f"; {len(records)} written to {out}" + (
      f"; {missing} videos not found (yet)" if missing else "")
  logging.info("%s", summary)
  return {"written": len(records), "skipped": len(problems.problems), "missing_videos": missing,
          "reasons": problems.counts(), "problems": [str(p) for p in problems.problems], "summary": summary}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m score_jax.data.benchmark_layouts",
                              description="Convert a benchmark's public layout to the score_jax JSONL format.")
  p.add_argument("--layout", required=True, choices=sorted(LAYOUTS))
  p.add_argument("--src", required=True, help="benchmark root folder or annotation file")
  p.add_argument("--out", required=True, help="output .jsonl file")
  p.add_argument("--videos", default=None, help="folder of the videos (default: the layout's usual place)")
  p.add_argument("--map", default=None, help="nextqa: map_vid_vidorID.json")
  p.add_argument("--strict", action="store_true", help="stop at the first record that cannot be converted")
  args = p.parse_args(argv)
  try:
    result = convert(args.layout, args.src, args.out, args.videos, args.map, args.strict)
  except (LayoutError, jf.DatasetError) as e:
    print(f"error: {e}")
    return 1
  print(result["summary"])
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
