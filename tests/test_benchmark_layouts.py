"""Each benchmark converter on a small constructed copy of that benchmark's public layout."""
import csv
import json
import os

import pytest

from score_jax.data import benchmark_layouts as bl
from score_jax.data import jsonl_format as jf


def touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  open(path, "wb").close()
  return str(path)


def read_out(path):
  ds = jf.read_jsonl(path)
  return {s.id: s for s in ds.samples}, ds


def test_strip_letter():
  assert bl.strip_letter("A. Apples.", 0) == "Apples."
  assert bl.strip_letter("(B) two", 1) == "two"
  assert bl.strip_letter("C: x", 2) == "x"
  assert bl.strip_letter("A. not mine", 1) == "A. not mine"


def videomme_rows():
  return [
      {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "History",
       "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
       "question": "How many people?", "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": "C"},
      {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "History",
       "videoID": "fFjv93ACGo8", "question_id": "001-2", "task_type": "OCR Problems",
       "question": "What is written?", "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "E"},
      {"video_id": "002", "duration": "long", "domain": "Sports", "sub_category": "Football",
       "videoID": "zzz", "question_id": "002-1", "task_type": "Action Reasoning",
       "question": "Who scores?", "options": ["A. Red team.", "B. Blue team.", "C. Nobody.", "D. Both."],
       "answer": "B"},
  ]


def test_videomme(tmp_path):
  root = tmp_path / "Video-MME"
  (root / "videomme").mkdir(parents=True)
  (root / "videomme" / "test.json").write_text(json.dumps(videomme_rows()))
  touch(root / "data" / "fFjv93ACGo8.mp4")
  touch(root / "data" / "zzz.mkv")
  out = str(root / "videomme.jsonl")
  result = bl.convert("videomme", str(root), out)
  assert (result["written"], result["skipped"], result["missing_videos"]) == (2, 1, 0)
  assert result["reasons"] == {"answer_not_in_options": 1}
  samples, ds = read_out(out)
  s = samples["001-1"]
  assert s.options == ("One.", "Two.", "Three.", "Four.") and s.answer == 2
  assert s.video == str(root / "data" / "fFjv93ACGo8.mp4")
  assert s.meta == {"task": "videomme", "duration": "short", "domain": "Knowledge", "sub_category": "History",
                    "task_type": "Counting Problem"}
  assert samples["002-1"].video.endswith("zzz.mkv") and samples["002-1"].answer == 1
  assert json.loads(open(out).readline())["video"] == "data/fFjv93ACGo8.mp4"  # relative to the output file
  assert ds.summary() == "videomme.jsonl: 2 samples read, 0 skipped (reasons: none)"


def test_videomme_parquet(tmp_path):
  pa = pytest.importorskip("pyarrow")
  import pyarrow.parquet as pq
  (tmp_path / "videomme").mkdir()
  pq.write_table(pa.Table.from_pylist(videomme_rows()), str(tmp_path / "videomme" / "test-00000-of-00001.parquet"))
  result = bl.convert("videomme", str(tmp_path), str(tmp_path / "out.jsonl"))
  assert (result["written"], result["missing_videos"]) == (2, 2)


def test_mlvu(tmp_path):
  root = tmp_path / "MLVU"
  (root / "json").mkdir(parents=True)
  (root / "json" / "1_plotQA.json").write_text(json.dumps([
      {"video": "movie101_66.mp4", "duration": 246, "question": "What does the woman hold?",
       "candidates": ["a cup", "a knife", "a book", "a phone"], "answer": "a book", "question_type": "plotQA"},
      {"video": "movie101_67.mp4", "duration": 100, "question": "Where?", "candidates": ["here", "there"],
       "answer": "nowhere", "question_type": "plotQA"}]))
  (root / "json" / "4_count.json").write_text(json.dumps([
      {"video": "count_1.mp4", "duration": 300, "question": "How many times?", "candidates": ["1", "2", "3", "4"],
       "answer": "4", "question_type": "count"}]))
  (root / "json" / "9_summary.json").write_text(json.dumps([
      {"video": "sum.mp4", "duration": 500, "question": "Summarise.", "answer": "A long text."}]))
  touch(root / "video" / "1_plotQA" / "movie101_66.mp4")
  touch(root / "video" / "4_count" / "count_1.mp4")
  out = str(tmp_path / "mlvu.jsonl")
  result = bl.convert("mlvu", str(root), out)
  assert (result["written"], result["skipped"]) == (2, 2)
  assert result["reasons"] == {"answer_not_in_options": 1, "missing_field": 1}
  samples, _ = read_out(out)
  s = samples["1_plotQA-0"]
  assert s.answer_letter == "C" and s.options[2] == "a book"
  assert s.meta == {"task": "mlvu", "task_type": "plotQA", "duration": 246}
  assert s.video == str(root / "video" / "1_plotQA" / "movie101_66.mp4")
  assert samples["4_count-0"].answer == 3 and samples["4_count-0"].meta["task_type"] == "count"
  assert json.loads(open(out).readline())["video"] == "MLVU/video/1_plotQA/movie101_66.mp4"


def test_longvideobench(tmp_path):
  root = tmp_path / "LongVideoBench"
  root.mkdir()
  (root / "lvb_val.json").write_text(json.dumps([
      {"video_id": "86CxyhFV9MI", "question": "What is on the table?", "candidates": ["a", "b", "c", "d", "e"],
       "correct_choice": 4, "id": "86CxyhFV9MI_0", "video_path": "86CxyhFV9MI.mp4", "duration": 501.9,
       "question_category": "TOS", "topic_category": "NP-News-Programs", "level": "L2-Relation"},
      {"video_id": "abc", "question": "When?", "candidates": ["x", "y"], "correct_choice": 1, "id": "abc_3",
       "video_path": "abc.mp4", "duration": 12.0, "start": 2.0, "end": 9.5},
      {"video_id": "abc", "question": "Test split?", "candidates": ["x", "y"], "id": "abc_4",
       "video_path": "abc.mp4"}]))
  touch(root / "videos" / "86CxyhFV9MI.mp4")
  touch(root / "videos" / "abc.mp4")
  out = str(root / "lvb.jsonl")
  result = bl.convert("longvideobench", str(root / "lvb_val.json"), out)
  assert (result["written"], result["skipped"], result["reasons"]) == (2, 1, {"missing_field": 1})
  samples, _ = read_out(out)
  assert samples["86CxyhFV9MI_0"].answer_letter == "E" and len(samples["86CxyhFV9MI_0"].options) == 5
  assert samples["86CxyhFV9MI_0"].meta == {"task": "longvideobench", "question_category": "TOS", "duration": 501.9,
                                           "topic_category": "NP-News-Programs", "level": "L2-Relation"}
  s = samples["abc_3"]
  assert (s.start, s.end, s.answer) == (2.0, 9.5, 1) and s.video == str(root / "videos" / "abc.mp4")


def test_nextqa(tmp_path):
  root = tmp_path / "NExTQA"
  root.mkdir()
  fields = ["video", "frame_count", "width", "height", "question", "answer", "qid", "type",
            "a0", "a1", "a2", "a3", "a4"]
  rows = [["4010069381", "369", "640", "480", "how do the two man play the instrument", "0", "6", "CH",
           "roll the handle", "tap their feet", "strum the string", "hit with sticks", "pat with hand"],
          ["4010069381", "369", "640", "480", "why is the man smiling", "7", "7", "CW",
           "a", "b", "c", "d", "e"],
          ["2440175990", "100", "640", "480", "what is the dog doing", "3", "1", "TC", "sit", "run", "eat",
           "sleep", "jump"]]
  with open(root / "val.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(fields)
    w.writerows(rows)
  (root / "map_vid_vidorID.json").write_text(json.dumps({"4010069381": "1006/4010069381",
                                                         "2440175990": "0000/2440175990"}))
  touch(root / "NExTVideo" / "1006" / "4010069381.mp4")
  out = str(root / "nextqa_val.jsonl")
  result = bl.convert("nextqa", str(root / "val.csv"), out)
  assert (result["written"], result["skipped"], result["missing_videos"]) == (2, 1, 1)
  assert result["reasons"] == {"answer_not_in_options": 1}
  assert result["problems"] == [f"{root / 'val.csv'}:3: answer index 7 is not among the 5 options "
                                "[answer_not_in_options]"]
  samples = {json.loads(x)["id"]: json.loads(x) for x in open(out)}
  s = samples["4010069381_6"]
  assert s["video"] == "NExTVideo/1006/4010069381.mp4" and s["answer"] == "A" and len(s["options"]) == 5
  assert s["type"] == "CH" and s["task"] == "nextqa"
  assert samples["2440175990_1"]["answer"] == "D"
  ds = jf.read_jsonl(out)  # the missing video is skipped by the reader
  assert ds.summary() == "nextqa_val.jsonl: 2 samples read, 1 skipped (reasons: missing_video=1)"


def test_cli(tmp_path, capsys):
  (tmp_path / "lvb_val.json").write_text(json.dumps([
      {"question": "q?", "candidates": ["x", "y"], "correct_choice": 0, "id": "a", "video_path": "a.mp4"}]))
  out = str(tmp_path / "o.jsonl")
  assert bl.main(["--layout", "longvideobench", "--src", str(tmp_path), "--out", out]) == 0
  assert "1 written to" in capsys.readouterr().out and os.path.exists(out)
  assert bl.main(["--layout", "mlvu", "--src", str(tmp_path / "nothing"), "--out", out]) == 1
  assert "error:" in capsys.readouterr().out
  (tmp_path / "lvb_val.json").write_text(json.dumps([{"question": "q?", "candidates": ["x"], "id": "b",
                                                       "correct_choice": 0, "video_path": "b.mp4"}]))
  assert bl.main(["--layout", "longvideobench", "--src", str(tmp_path), "--out", out, "--strict"]) == 1
  assert "'options' must be a list of 2 to 10" in capsys.readouterr().out
