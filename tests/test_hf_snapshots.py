"""The Hugging Face snapshot layouts lmms-eval reads, on small fixture snapshots written here (parquet
with pyarrow, real mp4 files with PyAV), and the per-category accuracy breakdown of the eval reports.

Paths, columns and categories as read in lmms-eval @75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3:
lmms_eval/tasks/{videomme,mlvu,longvideobench,nextqa}/utils.py and their yamls.
"""
import csv
import json
import os

import numpy as np
import pytest

from score_jax import category_breakdown as cb
from score_jax import evaluation
from score_jax.data import benchmark_layouts as bl
from score_jax.data import hf_snapshots as hf
from score_jax.data import image_preprocess as ip
from score_jax.data import jsonl_format as jf
from score_jax.data import video_decode as vd
from score_jax.data.feature_cache import decode_dataset
from score_jax.protocol import lmms_eval_prompts as lp

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402


def frames_of(n, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def video(path, n=20, seed=0):
  """A real (lossless) mp4 of n frames at `path`, whatever its extension's case."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = vd.write_video(str(path) + ".tmp.mp4", frames_of(n, seed), fps=10)
  os.replace(tmp, path)
  return str(path)


def parquet(path, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pq.write_table(pa.Table.from_pylist(rows), str(path))


def converted(layout, src, tmp_path, **kw):
  out = str(tmp_path / f"{layout}.jsonl")
  result = bl.convert(layout, str(src), out, **kw)
  return result, {s.id: s for s in jf.read_jsonl(out).samples}, out


@pytest.fixture()
def videomme(tmp_path):
  """lmms-lab/Video-MME: videomme/test-*.parquet, videos data/<videoID>.mp4, one stored as .MP4."""
  root = tmp_path / "videomme"
  parquet(root / "videomme" / "test-00000-of-00001.parquet", [
      {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
       "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
       "task_type": "Counting Problem", "question": "How many people are in the video?",
       "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."], "answer": "C"},
      {"video_id": "601", "duration": "long", "domain": "Sports Competition", "sub_category": "Football",
       "url": "", "videoID": "zzLong01", "question_id": "601-3", "task_type": "Action Reasoning",
       "question": "Who scores?", "options": ["A. Red team.", "B. Blue team.", "C. Nobody.", "D. Both."],
       "answer": "B"}])
  video(root / "data" / "fFjv93ACGo8.MP4", n=20, seed=1)
  video(root / "data" / "zzLong01.mp4", n=40, seed=2)
  return root


def test_videomme_hf_finds_upper_case_mp4_and_keeps_categories(videomme, tmp_path):
  result, samples, out = converted("videomme_hf", videomme, tmp_path)
  assert (result["written"], result["skipped"], result["missing_videos"]) == (2, 0, 0)
  s = samples["001-1"]
  assert s.question == "How many people are in the video?"
  assert s.options == ("One.", "Two.", "Three.", "Four.") and s.answer_letter == "C"
  assert s.video == str(videomme / "data" / "fFjv93ACGo8.MP4")
  assert s.meta == {"task": "videomme", "duration": "short", "domain": "Knowledge",
                    "sub_category": "Humanity & History", "task_type": "Counting Problem"}
  assert samples["601-3"].answer_letter == "B" and samples["601-3"].meta["duration"] == "long"
  # the same layout from the parquet file itself; `videomme` is the same converter
  assert converted("videomme_hf", videomme / "videomme" / "test-00000-of-00001.parquet", tmp_path)[0]["written"] == 2
  assert bl.LAYOUTS["videomme"] is bl.LAYOUTS["videomme_hf"]


def test_20_frame_video_sampled_at_32_frames_as_lmms_eval(videomme, tmp_path):
  """The .MP4 video has 20 frames: 32 are sampled with lmms-eval's index rounding, none dropped."""
  _, samples, out = converted("videomme_hf", videomme, tmp_path)
  ds = jf.read_jsonl(out)
  settings = ip.PreprocessSettings(image_size=16)
  got = dict((s.id, f) for s, f in decode_dataset(ds.samples, 32, settings, ds.problems))
  assert set(got) == {"001-1", "601-3"} and ds.problems.counts() == {}
  # lmms_eval/models/simple/llava_onevision.py LlavaOneVision.load_video: linspace(0, n - 1, 32, dtype=int)
  lmms_eval = np.linspace(0, 20 - 1, 32, dtype=int)
  assert vd.sample_indices(vd.probe(samples["001-1"].video), 32).tolist() == lmms_eval.tolist()
  np.testing.assert_array_equal(got["001-1"], ip.preprocess_frames(frames_of(20, 1)[lmms_eval], settings))


def test_mlvu_hf_splits_the_options_out_of_the_question(tmp_path):
  """sy1998/MLVU_dev: mlvu/test-*.parquet; options inside `question`; letter answers; <root>/<video_name>."""
  root = tmp_path / "mlvu"
  parquet(root / "mlvu" / "test-00000-of-00001.parquet", [
      {"video_name": "1_plotQA/movie101_66.mp4", "duration": 246.0,
       "question": "What does the woman hold?\n(A) a cup\n(B) a knife\n(C) a book\n(D) a phone",
       "candidates": ["a cup", "a knife", "a book", "a phone"], "answer": "C", "task_type": "plotQA",
       "question_id": "plotQA_0"},
      {"video_name": "4_count/count_1.MP4", "duration": 300.0,
       "question": "How many times does\nthe man jump?\n(A) 1\n(B) 2\n(C) 3", "candidates": ["1", "2", "3"],
       "answer": "(A)", "task_type": "count", "question_id": "count_4"},
      {"video_name": "4_count/count_1.mp4", "duration": 300.0, "question": "Which?\n(A) x\n(C) y",
       "candidates": ["x", "y"], "answer": "A", "task_type": "count", "question_id": "count_5"},
      {"video_name": "4_count/count_1.mp4", "duration": 300.0, "question": "Where?\n(A) here \n(B) there\n",
       "candidates": ["here", "there"], "answer": "B", "task_type": "count", "question_id": "count_6"}])
  video(root / "1_plotQA" / "movie101_66.mp4")
  video(root / "4_count" / "count_1.mp4")
  result, samples, _ = converted("mlvu_hf", root, tmp_path)
  assert (result["written"], result["skipped"], result["reasons"]) == (3, 1, {"bad_field": 1})
  s = samples["plotQA_0"]
  assert (s.question, s.options, s.answer_letter) == (
      "What does the woman hold?", ("a cup", "a knife", "a book", "a phone"), "C")
  assert s.meta == {"task": "mlvu", "task_type": "plotQA", "duration": 246.0}
  assert s.video == str(root / "1_plotQA" / "movie101_66.mp4")
  c = samples["count_4"]
  assert (c.question, c.options, c.answer) == ("How many times does\nthe man jump?", ("1", "2", "3"), 0)
  assert c.video == str(root / "4_count" / "count_1.mp4")  # .MP4 in the annotation, .mp4 on disk
  # lmms-eval's MLVU text is doc["question"]: the lmms_eval prompt style rebuilds it exactly from the record
  assert lp.mlvu_question(s.question, s.options) == (
      "What does the woman hold?\n(A) a cup\n(B) a knife\n(C) a book\n(D) a phone")
  assert lp.mlvu_question(c.question, c.options) == "How many times does\nthe man jump?\n(A) 1\n(B) 2\n(C) 3"
  lenient = samples["count_6"]  # not exactly "(A) text" lines (a trailing newline): split leniently
  assert (lenient.question, lenient.options, lenient.answer_letter) == ("Where?", ("here", "there"), "B")
  assert hf.split_embedded_options("No options here.") == ("No options here.", [])


def test_longvideobench_hf_drops_na_padding(tmp_path):
  """longvideobench/LongVideoBench: validation-*.parquet, option0..option4 padded with "N/A"; <root>/videos/."""
  root = tmp_path / "longvideobench"
  base = {"duration": 23.5, "topic_category": "NP-News-Programs", "level": "L1-Perception"}
  parquet(root / "validation-00000-of-00001.parquet", [
      dict(base, id="86CxyhFV9MI_0", video_path="86CxyhFV9MI.mp4", question="What is on the table?",
           option0="a cup", option1="a pen", option2="a book", option3="a phone", option4="N/A",
           correct_choice=3, duration_group=15, question_category="E2O"),
      dict(base, id="86CxyhFV9MI_1", video_path="86CxyhFV9MI.mp4", question="Who talks first?",
           option0="the host", option1="N/A", option2="the guest", option3="N/A", option4="N/A",
           correct_choice=2, duration_group=15, question_category="S2E"),
      dict(base, id="abc_2", video_path="abc.mp4", question="When?", option0="early", option1="late",
           option2="N/A", option3="N/A", option4="N/A", correct_choice=None, duration_group=60,
           question_category="T2E")])
  parquet(root / "test-00000-of-00001.parquet", [dict(base, id="t", video_path="t.mp4", question="?")])
  video(root / "videos" / "86CxyhFV9MI.mp4")
  result, samples, _ = converted("longvideobench_hf", root, tmp_path)
  assert (result["written"], result["skipped"]) == (1, 2)
  assert result["reasons"] == {"bad_field": 1, "missing_field": 1}
  s = samples["86CxyhFV9MI_0"]
  assert (s.question, s.options, s.answer_letter) == ("What is on the table?", ("a cup", "a pen", "a book", "a phone"),
                                                      "D")
  assert s.meta == {"task": "longvideobench", "duration_group": 15, "question_category": "E2O",
                    "topic_category": "NP-News-Programs", "level": "L1-Perception", "duration": 23.5}
  assert s.video == str(root / "videos" / "86CxyhFV9MI.mp4") and (s.start, s.end) == (None, None)


def test_nextqa_hf_reads_the_video_folder_at_the_snapshot_root(tmp_path):
  """lmms-eval/NExTQA (MC): MC/test-*.parquet, integer answers; videos <root>/NExTVideo/<video>.mp4."""
  root = tmp_path / "nextqa"
  parquet(root / "MC" / "test-00000-of-00001.parquet", [
      {"video": 4010069381, "frame_count": 20, "width": 16, "height": 16,
       "question": "how do the two man play the instrument ", "answer": 2, "qid": 6, "type": "CH",
       "a0": "roll the handle", "a1": "tap their feet ", "a2": "strum the string", "a3": "hit with sticks",
       "a4": "pat with hand"},
      {"video": 2440175990, "frame_count": 20, "width": 16, "height": 16, "question": "why is the dog running",
       "answer": 7, "qid": 1, "type": "CW", "a0": "a", "a1": "b", "a2": "c", "a3": "d", "a4": "e"}])
  video(root / "NExTVideo" / "4010069381.MP4")
  result, samples, out = converted("nextqa_hf", root, tmp_path)
  assert (result["written"], result["skipped"], result["reasons"]) == (1, 1, {"answer_not_in_options": 1})
  s = samples["4010069381_6"]
  assert s.question == "how do the two man play the instrument"
  assert s.options == ("roll the handle", "tap their feet", "strum the string", "hit with sticks", "pat with hand")
  assert (s.answer_letter, s.meta) == ("C", {"task": "nextqa", "type": "CH"})
  assert json.loads(open(out).readline())["video"] == "nextqa/NExTVideo/4010069381.MP4"


def test_missing_snapshot_files_are_clear_errors(tmp_path, capsys):
  (tmp_path / "empty").mkdir()
  assert bl.main(["--layout", "mlvu_hf", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o.jsonl")]) == 1
  assert "error: " in capsys.readouterr().out and "mlvu_hf snapshot" in str(
      pytest.raises(bl.LayoutError, hf.snapshot_tables, "mlvu_hf", str(tmp_path / "empty")).value)


def test_find_video_matches_extensions_in_any_case(tmp_path):
  from score_jax.data.video_files import find_video
  for name in ("a.Mp4", "b.MKV", "c.webm", "d.mp4"):
    (tmp_path / name).write_bytes(b"")
  assert find_video(str(tmp_path), "a.mp4") == str(tmp_path / "a.Mp4")
  assert find_video(str(tmp_path), "b") == str(tmp_path / "b.MKV")  # a bare stem: any video extension
  assert find_video(str(tmp_path), "c.mp4") == str(tmp_path / "c.webm")  # as videomme_doc_to_visual's .mkv
  assert find_video(str(tmp_path), "d.mp4") == str(tmp_path / "d.mp4")
  assert find_video(str(tmp_path), "e") == str(tmp_path / "e.mp4")  # missing: reported by the caller
  assert find_video(str(tmp_path), "e.AVI") == str(tmp_path / "e.AVI")


def test_jsonl_reader_finds_a_video_whose_extension_differs_in_case(tmp_path):
  video(tmp_path / "v" / "clip.MP4")
  (tmp_path / "d.jsonl").write_text(json.dumps({"id": "a", "video": "v/clip.mp4", "question": "q?",
                                                "options": ["x", "y"], "answer": "A"}) + "\n")
  ds = jf.read_jsonl(str(tmp_path / "d.jsonl"))
  assert [s.video for s in ds.samples] == [str(tmp_path / "v" / "clip.MP4")]


# ------------------------------------------------------------------------------------ category breakdown

def categories_and_scores():
  """6 VideoMME + 4 MLVU samples; `full` right on 5 of 6 and 3 of 4, `score@0.1` on fewer."""
  cats = {f"v{i}": {"task": "videomme", "duration": d, "domain": "Knowledge", "task_type": t}
          for i, (d, t) in enumerate([("short", "OCR Problems"), ("short", "Counting Problem"),
                                      ("medium", "OCR Problems"), ("long", "OCR Problems"),
                                      ("long", "Counting Problem"), ("long", "OCR Problems")])}
  cats.update({f"m{i}": {"task": "mlvu", "task_type": t} for i, t in enumerate(["count", "count", "count", "ego"])})
  full = dict(v0=1, v1=1, v2=1, v3=1, v4=0, v5=1, m0=1, m1=1, m2=0, m3=1)
  score = dict(v0=1, v1=0, v2=0, v3=1, v4=0, v5=0, m0=1, m1=0, m2=0, m3=0)
  random = {k: v / 3 for k, v in dict(v0=3, v1=1, v2=0, v3=2, v4=0, v5=1, m0=1, m1=1, m2=0, m3=2).items()}
  per_sample = {("full", 1.0): full, ("score", 0.1): score, ("random", 0.1): random}
  return cats, per_sample


def test_breakdown_by_category():
  cats, per_sample = categories_and_scores()
  groups = {(g["task"], g["field"]): g for g in cb.breakdown(per_sample, dict(cats, extra={"task": "videomme"}))}
  assert list(groups) == [("videomme", "duration"), ("videomme", "domain"), ("videomme", "task_type"),
                          ("mlvu", "task_type")]
  dur = groups[("videomme", "duration")]
  assert dur["categories"] == ["short", "medium", "long"]  # natural order, not alphabetical
  assert dur["n"] == {"all": 6, "short": 2, "medium": 1, "long": 3}
  assert dur["accuracy"][("full", 1.0)] == pytest.approx({"all": 5 / 6, "short": 1.0, "medium": 1.0, "long": 2 / 3})
  assert dur["accuracy"][("score", 0.1)] == pytest.approx({"all": 2 / 6, "short": 0.5, "medium": 0.0, "long": 1 / 3})
  assert dur["accuracy"][("random", 0.1)]["long"] == pytest.approx((2 / 3 + 0 + 1 / 3) / 3)
  tt = groups[("videomme", "task_type")]
  assert tt["accuracy"][("full", 1.0)] == pytest.approx({"all": 5 / 6, "Counting Problem": 0.5, "OCR Problems": 1.0})
  ml = groups[("mlvu", "task_type")]
  # MLVU's reported score is the mean over task types: (2/3 + 1) / 2, not the per-question 3/4
  assert ml["accuracy"][("full", 1.0)] == pytest.approx({"all": 0.75, "count": 2 / 3, "ego": 1.0,
                                                         cb.MACRO: (2 / 3 + 1) / 2})
  assert cb.breakdown(per_sample, {}) == [] and "_by_category" not in cb.add_breakdown({}, cats)


def results_with(per_sample=None):
  r = {("full", 1.0): 0.8, ("score", 0.1): 0.4, ("random", 0.1): 0.3, "_latency": {"score": 0.01},
       "_prefill": {1.0: 0.1, 0.1: 0.02}, "_samples": 10, "_retention": {}}
  if per_sample:
    r["_per_sample"] = per_sample
  return r


def test_reports_add_per_category_tables_only_with_metadata(tmp_path):
  cats, per_sample = categories_and_scores()
  plain = results_with()
  evaluation.write_reports({"jsonl": plain}, (1.0, 0.1), ["score", "random"], str(tmp_path / "plain"), plot=False)
  with_ids = cb.add_breakdown(results_with(per_sample), {})  # ids but no categories: the same reports
  evaluation.write_reports({"jsonl": with_ids}, (1.0, 0.1), ["score", "random"], str(tmp_path / "ids"), plot=False)
  for f in ("eval.md", "eval.csv", "eval.json"):
    assert open(tmp_path / "plain" / f).read() == open(tmp_path / "ids" / f).read()
  header = next(csv.reader(open(tmp_path / "plain" / "eval.csv")))
  assert header == ["set", "method", "retention", "accuracy", "relative_to_full", "selection_s_per_batch"]

  results = cb.add_breakdown(results_with(per_sample), cats)
  evaluation.write_reports({"jsonl": results}, (1.0, 0.1), ["score", "random"], str(tmp_path / "cat"), plot=False)
  md = open(tmp_path / "cat" / "eval.md").read()
  assert md.startswith(open(tmp_path / "plain" / "eval.md").read().rstrip("\n"))  # the overall table first
  assert "### videomme: accuracy by duration" in md and "### mlvu: accuracy by task_type" in md
  assert "| method | kept | all (n=6) | short (n=2) | medium (n=1) | long (n=3) |" in md
  assert "| score | 10% | 0.333 | 0.500 | 0.000 | 0.333 |" in md
  assert "| full | 100% | 0.750 | 0.667 | 1.000 | 0.833 |" in md  # mlvu: all, count, ego, mean of categories
  rows = list(csv.DictReader(open(tmp_path / "cat" / "eval.csv")))
  assert rows[0]["category"] == "" and rows[0]["method"] == "full"
  long_score = [r for r in rows if (r["method"], r["category_field"], r["category"]) == ("score", "duration", "long")]
  assert len(long_score) == 1 and long_score[0]["accuracy"] == "0.3333"
  assert long_score[0]["relative_to_full"] == "0.5000"  # 1/3 against full's 2/3 on the long videos
  by_cat = json.load(open(tmp_path / "cat" / "eval.json"))["jsonl"]["by_category"]
  mlvu = [g for g in by_cat if g["task"] == "mlvu"][0]
  assert mlvu["n"] == {"all": 4, "count": 3, "ego": 1}
  assert mlvu["accuracy"]["score@0.1"][cb.MACRO] == pytest.approx((1 / 3 + 0) / 2)


def test_categories_read_from_converted_jsonl(videomme, tmp_path):
  _, _, out = converted("videomme_hf", videomme, tmp_path)
  with open(out, "a") as f:
    f.write("{not json\n" + json.dumps({"id": "plain", "video": "x.mp4"}) + "\n")
  cats = cb.read_categories(out)
  assert cats == {"001-1": {"task": "videomme", "duration": "short", "domain": "Knowledge",
                            "task_type": "Counting Problem"},
                  "601-3": {"task": "videomme", "duration": "long", "domain": "Sports Competition",
                            "task_type": "Action Reasoning"}}


def test_a_cache_that_skipped_short_videos_is_not_current(tmp_path):
  """Caches built before short videos were sampled (skip reason too_few_frames) must be updated."""
  from score_jax.data import feature_cache as fc
  manifest = {"settings": {"format": fc.FORMAT}, "complete": True, "entries": {}, "samples": [],
              "skipped": [{"source": "d.jsonl:3", "sample_id": "s", "reason": "no_frames", "message": ""}]}
  (tmp_path / fc.MANIFEST).write_text(json.dumps(manifest))
  assert fc.cache_status(str(tmp_path)) is None
  manifest["skipped"].append({"source": "d.jsonl:4", "sample_id": "t", "reason": "too_few_frames", "message": ""})
  (tmp_path / fc.MANIFEST).write_text(json.dumps(manifest))
  assert "skipped 1 samples whose videos are shorter than the frame count" in fc.cache_status(str(tmp_path))


def test_eval_reports_of_a_converted_benchmark_break_accuracy_down(videomme, tmp_path, monkeypatch):
  """`train.evaluate_and_report` (behind `score_jax.eval`) joins per-sample results with the eval file's
  categories; the model run is replaced by fixed per-sample results."""
  import ml_collections
  from score_jax import train as train_lib
  _, _, out = converted("videomme_hf", videomme, tmp_path)
  per_sample = {("full", 1.0): {"001-1": 1.0, "601-3": 0.0}, ("uniform_pool", 0.25): {"001-1": 0.0, "601-3": 0.0}}
  fake = results_with()
  fake.update({("full", 1.0): 0.5, ("uniform_pool", 0.25): 0.0, "_samples": 2, "_per_sample": per_sample})
  monkeypatch.setattr(evaluation, "evaluate_methods", lambda *a, **k: dict(fake))
  config = ml_collections.ConfigDict({"eval": {"source": "jsonl", "random_seeds": 1}, "seed": 0,
                                      "data": {"eval_file": out}})
  results = train_lib.evaluate_and_report(config, None, {}, ["uniform_pool"], (1.0, 0.25), str(tmp_path / "r"))
  md = open(tmp_path / "r" / "eval.md").read()
  assert "### videomme: accuracy by duration" in md
  assert "| uniform_pool | 25% | 0.000 | 0.000 | 0.000 |" in md and "| full | 100% | 0.500 | 1.000 | 0.000 |" in md
  assert [g["field"] for g in results["jsonl"]["_by_category"]] == ["duration", "domain", "task_type"]
