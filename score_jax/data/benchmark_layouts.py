"""Converters from the public layouts of video QA benchmarks (local, already downloaded) to the JSONL format.

    python -m score_jax.data.benchmark_layouts --layout videomme_hf --src ~/data/Video-MME --out videomme.jsonl
    python -m score_jax.data.benchmark_layouts --layout mlvu_hf --src ~/data/MLVU_dev --out mlvu_dev.jsonl
    python -m score_jax.data.benchmark_layouts --layout nextqa --src ~/data/NExTQA/val.csv \\
        --videos ~/data/NExTQA/NExTVideo --map ~/data/NExTQA/map_vid_vidorID.json --out nextqa_val.jsonl

Expected inputs (`--src` is the benchmark's root folder or its annotation file; `--videos` overrides
where the videos are looked for). Annotation tables may be .json (a list, or a dict holding one),
.jsonl, .csv or .parquet (`score_jax.data.annotation_io`); video extensions match in any case.

The Hugging Face snapshots that lmms-eval reads: `videomme_hf`, `mlvu_hf`, `longvideobench_hf`,
`nextqa_hf` (`score_jax.data.hf_snapshots`; `videomme` is the same layout as `videomme_hf`). The
original releases:
- mlvu (MLVU dev): `json/<task>.json` (e.g. `1_plotQA.json`), each a list of {video, question,
  candidates: [...], answer: <text of the right candidate>, duration, question_type}; videos
  `video/<task>/<video>`. Entries without candidates (open-ended tasks) are skipped. `task_type` is
  the file's task without its number ("plotQA", "needle", ...), as in the Hugging Face MLVU_dev.
- longvideobench: `lvb_val.json`, a list of {id, video_path, question, candidates: [...],
  correct_choice: <index>, duration, duration_group, question_category, ...} (optional
  `start`/`end` seconds are kept); videos `videos/<video_path>`. Test files without
  `correct_choice` are skipped.
- nextqa (NExT-QA multiple choice): a csv (`val.csv`, `test.csv`) with columns video, qid,
  question, a0..a4, answer (index 0-4), type; `map_vid_vidorID.json` ({"<video>":
  "<folder>/<vidorID>"}, searched next to the csv if `--map` is not given); videos
  `<videos>/<folder>/<vidorID>.mp4` (default `NExTVideo/` next to the csv).

Every record gets `task` ("videomme", "mlvu", "longvideobench" or "nextqa") and keeps the category
fields lmms-eval reports by (`score_jax.data.benchmark_tasks`).

Video paths are written relative to the output file's folder. Records that cannot be converted
(no answer, an answer not among the options, a missing field) are skipped with a warning and counted
in a summary line; a video that does not exist yet is only counted (the reader skips it later).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
from typing import Callable, Iterable

from absl import logging

from score_jax.data import benchmark_tasks as bt
from score_jax.data import hf_snapshots as hf
from score_jax.data import jsonl_format as jf
from score_jax.data.annotation_io import LayoutError, keep_fields, letter, need, read_table, strip_letter  # noqa: F401
from score_jax.data.video_files import VIDEO_EXTENSIONS, find_video  # noqa: F401


# ------------------------------------------------------------------------------------ layouts

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
        video, question, cands, answer = need(row, "video", "question", "candidates", "answer")
        cands = [str(c) for c in cands]
        if str(answer) not in cands:
          raise jf.BadSample(jf.ANSWER_NOT_IN_OPTIONS, f"answer {answer!r} is not one of the candidates {cands}")
        return {"id": f"{task}-{i}", "video": find_video(os.path.join(videos, task), str(video)),
                "question": question, "options": cands, "answer": jf.LETTERS[cands.index(str(answer))],
                "task": bt.MLVU, **keep_fields(row, bt.META_FIELDS[bt.MLVU]),
                "task_type": re.sub(r"^\d+_", "", task)}
      yield f"{path}:{i + 1}", make


def longvideobench_records(src: str, videos: str | None = None) -> Iterable[tuple[str, Callable]]:
  path = os.path.join(src, "lvb_val.json") if os.path.isdir(src) else src
  videos = videos or os.path.join(os.path.dirname(os.path.abspath(path)), "videos")
  for i, row in enumerate(read_table(path)):
    def make(row=row, i=i):
      if row.get("correct_choice") is None:
        raise jf.BadSample(jf.MISSING_FIELD, "no 'correct_choice' (a test split without answers?)")
      video, question, cands, choice = need(row, "video_path", "question", "candidates", "correct_choice")
      rec = {"id": str(row.get("id") or f"lvb-{i}"), "video": find_video(videos, str(video)),
             "question": question, "options": [str(c) for c in cands], "answer": letter(choice, len(cands))}
      for k in ("start", "end"):
        if row.get(k) is not None:
          rec[k] = float(row[k])
      return dict(rec, task=bt.LONGVIDEOBENCH, **keep_fields(row, bt.META_FIELDS[bt.LONGVIDEOBENCH]))
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
      video = str(row.get("video"))
      return hf.nextqa_record(dict(row, qid=row.get("qid", i)), find_video(videos, vmap.get(video, video)))
    yield f"{src}:{i + 2 if src.endswith('.csv') else i + 1}", make


LAYOUTS = {"videomme": hf.videomme_records, "mlvu": mlvu_records, "longvideobench": longvideobench_records,
           "nextqa": nextqa_records, **hf.LAYOUTS}


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
  p.add_argument("--src", required=True, help="benchmark root (or Hugging Face snapshot) folder, or annotation file")
  p.add_argument("--out", required=True, help="output .jsonl file")
  p.add_argument("--videos", default=None, help="folder of the videos (default: the layout's usual place; *_hf: "
                                                 "the snapshot folder, where lmms-eval extracts the video archives)")
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
