"""Feature cache end to end on real mp4 files and a tiny random LLaVA-OneVision checkpoint folder."""
import json
import os
import re
import shutil
import subprocess
import sys

import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from score_jax import cache as cache_cli
from score_jax import checkpointing
from score_jax import evaluation
from score_jax.data import feature_cache as fc
from score_jax.data import image_preprocess as ip
from score_jax.data import jsonl_format as jf
from score_jax.data import video_decode as vd
from score_jax.data.pipeline import make_iterator
from score_jax.embedded.model_config import embedded_config
from score_jax.embedded.world_text import WorldText
from score_jax.frozen_llm import FrozenLLM
from score_jax.models import hf_loading, hf_saving, prefill
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.prompt import PromptEncoder
from score_jax.testing.random_params import numpy_params

FRAMES = 4
SUFFIX_LEN = 64
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTIONS = ["what shape is moving", "what color is the square", "does the circle turn", "what color appears"]
OPTIONS = [["red", "blue", "green", "cyan"], ["square", "circle", "triangle", "cross"]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("tiny_llava"))
  text = WorldText.create()
  cfg = embedded_config(len(text.tokenizer), *text.special_ids(), image_size=32)
  module = LlavaOnevision(cfg)
  params = numpy_params(lambda k, *a: module.init(k, *a, method=LlavaOnevision.init_all),
                        *hf_loading.llava_dummy_inputs(cfg), seed=1)
  hf_saving.save_llava_onevision(folder, cfg, params, text.tokenizer)
  with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
    json.dump({"image_mean": [0.5, 0.45, 0.4], "image_std": [0.25, 0.3, 0.35], "resample": 3,
               "size": {"height": 32, "width": 32}}, f)
  return folder


@pytest.fixture(scope="module")
def llm(model_dir):
  cfg, module, params = hf_loading.load_llava_onevision(model_dir)
  llm = FrozenLLM(cfg, module, params, PromptEncoder.from_folder(model_dir), SUFFIX_LEN, FRAMES)
  llm.option_ids  # computed outside any jit (a cached property first read under jit would cache a tracer)
  return llm


@pytest.fixture(scope="module")
def encoder(model_dir):
  return fc.VisionEncoder.load(model_dir)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """4 good videos (v0 asked about twice), a truncated one, a missing one, a bad answer, a window past a video's end."""
  root = tmp_path_factory.mktemp("dataset")
  (root / "videos").mkdir()
  rng = np.random.default_rng(0)
  for i in range(4):
    vd.write_video(str(root / "videos" / f"v{i}.mp4"), rng.integers(0, 256, (10 + 2 * i, 40, 48, 3), np.uint8),
                   fps=4)
  vd.write_video(str(root / "videos" / "full.mp4"), rng.integers(0, 256, (12, 40, 48, 3), np.uint8), fps=4,
                 faststart=True)
  data = open(root / "videos" / "full.mp4", "rb").read()
  (root / "videos" / "truncated.mp4").write_bytes(data[:len(data) // 2])
  vd.write_video(str(root / "videos" / "short.mp4"), rng.integers(0, 256, (3, 40, 48, 3), np.uint8), fps=4)

  def rec(i, video, answer, **kw):
    return dict(id=f"s{i}", video=video, question=QUESTIONS[i % 4], options=OPTIONS[i % 2], answer=answer,
                task="nextqa", **kw)  # the lmms_eval prompt style of experiments/llava_ov_*.py reads it
  lines = [rec(0, "videos/v0.mp4", "A"), rec(1, "videos/truncated.mp4", "B"), rec(2, "videos/v1.mp4", "C"),
           rec(3, "videos/missing.mp4", "A"), rec(4, "videos/v2.mp4", "F"), rec(5, "videos/v0.mp4", "D"),
           rec(6, "videos/short.mp4", "A", start=5.0, end=6.0), rec(7, "videos/v2.mp4", "B", start=0.5, end=3.0),
           rec(8, "videos/v3.mp4", "C")]
  path = root / "data.jsonl"
  path.write_text("".join(json.dumps(x) + "\n" for x in lines))
  return str(path)


@pytest.fixture(scope="module")
def built(dataset, encoder, tmp_path_factory):
  cache_dir = str(tmp_path_factory.mktemp("cache"))
  return cache_dir, fc.build_cache(dataset, cache_dir, encoder, FRAMES, batch_size=2)


def copy_cache(built, tmp_path):
  dst = str(tmp_path / "cache")
  shutil.copytree(built[0], dst)
  return dst


def reference_tokens(llm, sample, preprocess):
  frames = vd.decode_video(sample.video, FRAMES, sample.start, sample.end)
  x = ip.preprocess_frames(frames, preprocess)[None]
  return np.asarray(prefill.encode_video(llm.module, llm.params, jnp.asarray(x)))[0]


def test_cache_holds_the_vision_tokens_of_the_decoded_frames(built, dataset, llm, encoder):
  cache_dir, report = built
  assert report.summary().splitlines()[0] == (
      "data.jsonl: 9 samples read, 4 skipped (reasons: answer_not_in_options=1, missing_video=1, "
      "no_frames=1, truncated_video=1)")
  assert (report.samples, report.entries, report.built, report.reused, report.rebuilt) == (5, 4, 4, 0, 0)
  assert encoder.preprocess.mean == (0.5, 0.45, 0.4)  # read from the checkpoint folder
  src = fc.CachedFeatureSource(cache_dir, dataset_path=dataset)
  assert len(src) == 5
  samples = {s.id: s for s in jf.read_jsonl(dataset).samples}
  for i in range(len(src)):
    item = src[i]
    s = samples[str(item["id"])]
    assert item["visual"].shape == (FRAMES, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size)
    np.testing.assert_allclose(item["visual"], reference_tokens(llm, s, encoder.preprocess), atol=1e-5)
    assert (str(item["question"]), int(item["answer"]), int(item["num_options"])) == (s.question, s.answer, 4)
    assert [str(o) for o in item["options"]] == list(s.options)
  assert [str(src[i]["id"]) for i in range(5)] == ["s0", "s2", "s5", "s7", "s8"]
  m = fc.read_manifest(cache_dir)
  assert m["complete"] and len(m["skipped"]) == 4 and m["dataset"]["sha256"] == jf.file_sha256(dataset)
  assert {e["video"] for e in m["entries"].values()} == {"videos/v0.mp4", "videos/v1.mp4", "videos/v2.mp4",
                                                          "videos/v3.mp4"}
  again = fc.build_cache(dataset, cache_dir, encoder, FRAMES, batch_size=2)
  assert (again.reused, again.built, again.rebuilt) == (4, 0, 0)


def test_strict_mode_raises_on_the_first_bad_sample(dataset, encoder, tmp_path):
  with pytest.raises(jf.DatasetError, match=r"data.jsonl:4 \(sample 's3'\): video file .*missing.mp4 does not"):
    fc.build_cache(dataset, str(tmp_path / "c"), encoder, FRAMES, strict=True)
  # A video that only fails while decoding is an error too.
  videos = os.path.join(os.path.dirname(dataset), "videos")
  path = tmp_path / "decode.jsonl"
  path.write_text("".join(json.dumps(dict(id=i, video=os.path.join(videos, v), question=QUESTIONS[0],
                                          options=OPTIONS[0], answer="A")) + "\n"
                          for i, v in (("ok", "v0.mp4"), ("cut", "truncated.mp4"))))
  with pytest.raises(jf.DatasetError, match=r"decode.jsonl:2 \(sample 'cut'\): .*truncated.mp4: the stream ended "
                                            r"after frame .*truncated or corrupt file \[truncated_video\] \(strict"):
    fc.build_cache(str(path), str(tmp_path / "c2"), encoder, FRAMES, strict=True)


def test_entry_not_matching_its_checksum_is_rebuilt(built, dataset, encoder, tmp_path):
  cache_dir = copy_cache(built, tmp_path)
  m = fc.read_manifest(cache_dir)
  key = next(iter(m["entries"]))
  good = fc.CachedFeatureSource(cache_dir).visual(key)
  m["entries"][key]["sha256"] = "0" * 64
  json.dump(m, open(os.path.join(cache_dir, fc.MANIFEST), "w"))
  with pytest.raises(fc.CacheError, match=rf"record \d+ does not match its sha256 checksum; entry {key} \(video "
                                          r".*is corrupt; rerun `python -m score_jax.cache --config="):
    fc.CachedFeatureSource(cache_dir).visual(key)
  report = fc.build_cache(dataset, cache_dir, encoder, FRAMES, batch_size=2)
  assert (report.reused, report.built, report.rebuilt) == (3, 0, 1)
  np.testing.assert_array_equal(fc.CachedFeatureSource(cache_dir).visual(key), good)
  # Damage the stored bytes themselves: every entry of the damaged file is rebuilt or re-verified.
  path = os.path.join(cache_dir, fc.read_manifest(cache_dir)["entries"][key]["file"])
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0xFF
  open(path, "wb").write(bytes(data))
  report = fc.build_cache(dataset, cache_dir, encoder, FRAMES, batch_size=2)
  assert report.rebuilt == 1 and report.reused == 3
  src = fc.CachedFeatureSource(cache_dir)
  np.testing.assert_array_equal(src.visual(key), good)
  assert os.listdir(cache_dir).count(fc.MANIFEST) == 1
  assert not [n for n in os.listdir(cache_dir) if n.endswith(".tmp")]


def test_replaced_video_makes_the_cache_stale(built, dataset, encoder, tmp_path):
  root = tmp_path / "ds"
  shutil.copytree(os.path.dirname(dataset), root)
  path = str(root / os.path.basename(dataset))
  cache_dir = copy_cache(built, tmp_path)
  assert fc.cache_status(cache_dir, dataset_path=path) is None
  os.remove(root / "videos" / "v3.mp4")  # gone from disk: still served from the cache
  assert fc.cache_status(cache_dir, dataset_path=path) is None
  vd.write_video(str(root / "videos" / "v1.mp4"), np.zeros((12, 40, 48, 3), np.uint8), fps=4)  # replaced
  problem = fc.cache_status(cache_dir, dataset_path=path)
  assert problem is not None and "v1.mp4 changed since the feature cache" in problem
  report = fc.build_cache(path, cache_dir, encoder, FRAMES, batch_size=2)
  assert report.built == 1 and fc.cache_status(cache_dir, dataset_path=path) is None


def test_changed_settings_rebuild_everything(built, dataset, encoder, model_dir, tmp_path):
  cache_dir = copy_cache(built, tmp_path)
  m = fc.read_manifest(cache_dir)
  m["settings"]["preprocess"]["mean"] = [0.5, 0.5, 0.5]
  json.dump(m, open(os.path.join(cache_dir, fc.MANIFEST), "w"))
  with pytest.raises(fc.CacheError, match=r"other settings \(preprocess.mean\)"):
    fc.CachedFeatureSource(cache_dir, settings=encoder.settings(FRAMES))
  report = fc.build_cache(dataset, cache_dir, encoder, FRAMES, batch_size=2)
  assert (report.reused, report.rebuilt) == (0, 4)
  assert len([n for n in os.listdir(cache_dir) if n.endswith(".array_record")]) == 1  # old file removed
  fc.CachedFeatureSource(cache_dir, settings=encoder.settings(FRAMES))


def test_eval_over_the_cached_dataset(built, dataset, llm, encoder):
  cache_dir, _ = built
  src = fc.CachedFeatureSource(cache_dir, dataset_path=dataset)
  batches = lambda: fc.iterate_batches(src, 5, llm.prompts, SUFFIX_LEN)
  first = next(batches())
  assert set(first) == {"visual", "prefix", "suffix", "suffix_len", "answer", "num_options", "id"}
  results = evaluation.evaluate_methods(llm, batches, (1.0, 0.5), ["uniform_pool", "random"], {},
                                        random_seeds=1)
  assert results["_samples"] == 5
  per_sample = results["_per_sample"][("full", 1.0)]  # each sample's result by id (the category breakdown's input)
  assert sorted(per_sample) == ["s0", "s2", "s5", "s7", "s8"]
  assert sum(per_sample.values()) / 5 == pytest.approx(results[("full", 1.0)])
  for key in (("full", 1.0), ("uniform_pool", 0.5), ("random", 0.5)):
    assert 0.0 <= results[key] <= 1.0
  # The same accuracy from the decoded videos, without the cache.
  ds = jf.read_jsonl(dataset)
  correct = 0
  for s, frames in fc.decode_dataset(ds.samples, FRAMES, encoder.preprocess, ds.problems):
    visual = llm.encode(llm.params, jnp.asarray(frames[None]))
    prefix, suffix, n = llm.prompts.encode_batch([s.question], [list(s.options)], SUFFIX_LEN)
    logits = prefill.prefill_logits(llm.module, llm.params, visual, prefill.all_keep_indices(1, visual.shape[1] * visual.shape[2]),
                                    prefix, suffix, n)
    correct += int(np.argmax(prefill.option_logprobs(logits, llm.option_ids)[0]) == s.answer)
  assert results[("full", 1.0)] == pytest.approx(correct / 5)


def test_config_entry_points(dataset, model_dir, llm, tmp_path):
  config = ml_collections.ConfigDict({
      "model": {"kind": "hf", "checkpoint": model_dir, "dtype": "float32", "mesh": (1, 1, 1), "num_frames": FRAMES},
      "data": {"train_file": dataset, "eval_file": "", "cache_dir": str(tmp_path / "caches"),
               "cache_batch_size": 2, "decode_threads": 2}})
  decoded = cache_cli.open_source(config, "train")  # no cache yet: decode on the fly
  assert isinstance(decoded, fc.VideoSampleSource) and len(decoded) == 6  # header probing drops short.mp4
  reports = cache_cli.build(config)
  assert list(reports) == ["train"] and reports["train"].entries == 4
  cached = cache_cli.open_source(config, "train")
  assert isinstance(cached, fc.CachedFeatureSource) and len(cached) == 5
  pre = cache_cli.preprocess_settings(config)
  item_v = {k: np.asarray(v)[None] for k, v in cached[0].items()}
  item_f = {k: np.asarray(v)[None] for k, v in decoded[0].items()}
  bv = fc.model_batch(item_v, llm.prompts, SUFFIX_LEN)
  bf = fc.model_batch(item_f, llm.prompts, SUFFIX_LEN, pre)
  np.testing.assert_allclose(np.asarray(llm.encode(llm.params, bf["frames"])), bv["visual"], atol=1e-5)
  for k in ("prefix", "suffix", "suffix_len", "answer"):
    np.testing.assert_array_equal(bv[k], bf[k])


def cli_config(tmp_path, model_dir, train_file, eval_file=""):
  """A config file for `python -m score_jax.cache` over the tiny checkpoint."""
  config = tmp_path / "cfg.py"
  config.write_text(
      "import ml_collections\n\n\ndef get_config():\n"
      "  return ml_collections.ConfigDict({\n"
      f"      'model': {{'kind': 'hf', 'checkpoint': {model_dir!r}, 'dtype': 'float32', 'mesh': (1, 1, 1),\n"
      f"                'num_frames': {FRAMES}}},\n"
      f"      'data': {{'train_file': {train_file!r}, 'eval_file': {eval_file!r}, "
      f"'cache_dir': {str(tmp_path / 'c')!r}}}}})\n")
  return config


def run_cache_cli(*args):
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "score_jax.cache", *map(str, args)], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def test_cache_command_line(dataset, model_dir, tmp_path):
  config = cli_config(tmp_path, model_dir, dataset)
  out = run_cache_cli(f"--config={config}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert ("[train] data.jsonl: 9 samples read, 4 skipped (reasons: answer_not_in_options=1, missing_video=1, "
          "no_frames=1, truncated_video=1)") in out.stdout
  assert "5 samples, 4 entries (0 reused, 4 built, 0 rebuilt)" in out.stdout
  assert "truncated.mp4: the stream ended after frame" in out.stderr  # the warning names the file
  strict = run_cache_cli(f"--config={config}", "--strict")
  assert strict.returncode == 1 and "error: " in strict.stderr and "missing.mp4 does not exist" in strict.stderr


def test_cache_command_line_with_nothing_to_build_fails(dataset, model_dir, tmp_path):
  """Issue 10: no dataset file set, or a split named in --splits without one, exits non-zero saying which keys."""
  out = run_cache_cli(f"--config={cli_config(tmp_path, model_dir, '')}")
  assert out.returncode == 1, out.stderr[-3000:]
  assert ("error: Nothing to cache: none of config.data.train_file, config.data.eval_file and "
          "config.data.image_file is set. Set one or more to a JSONL dataset file") in out.stderr
  assert "Traceback" not in out.stderr
  out = run_cache_cli(f"--config={cli_config(tmp_path, model_dir, dataset)}", "--splits=train,eval")
  assert out.returncode == 1 and "Traceback" not in out.stderr
  assert ("error: --splits names 'eval' but config.data.eval_file is not set: set it to the eval JSONL dataset "
          "file, or leave eval out of --splits.") in out.stderr
  assert not os.path.exists(tmp_path / "c" / "train")  # checked before anything is built
  with pytest.raises(fc.CacheError, match="--splits names 'train' but config.data.train_file is not set"):
    cache_cli.build(jsonl_config(model_dir, "", tmp_path), splits=["train"])


def jsonl_config(model_dir, train_file, tmp_path):
  return ml_collections.ConfigDict({
      "model": {"kind": "hf", "checkpoint": model_dir, "dtype": "float32", "mesh": (1, 1, 1), "num_frames": FRAMES},
      "data": {"train_file": str(train_file), "eval_file": "", "cache_dir": str(tmp_path / "caches"),
               "cache_batch_size": 2, "decode_threads": 1}})


def test_good_lines_of_a_jsonl_with_a_non_utf8_line_are_cached(dataset, model_dir, encoder, tmp_path):
  """Issue 10 acceptance: a line holding a byte that is not UTF-8 is one counted skip with its line number;
  the good lines around it are cached and read back."""
  videos = os.path.join(os.path.dirname(dataset), "videos")
  line = lambda i, v: json.dumps(dict(id=f"g{i}", video=os.path.join(videos, v), question=QUESTIONS[i],
                                      options=OPTIONS[0], answer="B")).encode()
  path = tmp_path / "mixed.jsonl"
  path.write_bytes(b"\n".join([line(0, "v0.mp4"), line(1, "v1.mp4").replace(b"what", b"wh\xffat"),
                               line(2, "v2.mp4"), line(3, "v3.mp4")]) + b"\n")
  config = jsonl_config(model_dir, path, tmp_path)
  report = cache_cli.build(config, encoder=encoder)["train"]
  assert report.summary().splitlines()[0] == "mixed.jsonl: 4 samples read, 1 skipped (reasons: bad_encoding=1)"
  assert (report.samples, report.entries, report.built) == (3, 3, 3)
  [problem] = report.problems.problems
  assert (problem.source, problem.reason) == (f"{path}:2", "bad_encoding")
  assert "not UTF-8 text (byte 0xff at position" in problem.message
  src = cache_cli.open_source(config, "train")
  assert isinstance(src, fc.CachedFeatureSource)
  assert [str(src[i]["id"]) for i in range(len(src))] == ["g0", "g2", "g3"]
  assert src[0]["visual"].shape[0] == FRAMES
  m = fc.read_manifest(str(tmp_path / "caches" / "train"))
  assert [(p["source"], p["reason"]) for p in m["skipped"]] == [(f"{path}:2", "bad_encoding")]


def test_a_split_with_no_usable_samples_is_an_error(dataset, built, model_dir, encoder, tmp_path):
  """Issue 10: zero usable samples fails at the cache build and where train/eval open the split, naming the
  file and the skips (it used to "succeed" and end training with a bare StopIteration)."""
  videos = os.path.join(os.path.dirname(dataset), "videos")
  rec = lambda i, v, **kw: json.dumps(dict(id=f"z{i}", video=os.path.join(videos, v), question=QUESTIONS[0],
                                           options=OPTIONS[0], answer="A", **kw))
  bad = tmp_path / "bad.jsonl"
  bad.write_text("\n".join(["{not json", rec(1, "gone.mp4"), "[1, 2"]) + "\n")
  config = jsonl_config(model_dir, bad, tmp_path)
  want = re.escape(f"{bad}: no usable samples (3 skipped: bad_json=2, missing_video=1)")
  with pytest.raises(jf.DatasetError, match=want):
    cache_cli.build(config, encoder=encoder)
  assert not os.path.exists(tmp_path / "caches" / "train")
  with pytest.raises(jf.DatasetError, match=want):  # no cache: the decode-on-read path
    cache_cli.open_source(config, "train")
  # Every video fails to decode: the build fails after recording the skips; the cached split fails to open.
  undecodable = tmp_path / "undecodable.jsonl"
  undecodable.write_text(rec(1, "truncated.mp4") + "\n" + rec(2, "short.mp4", start=5.0, end=6.0) + "\n")
  config = jsonl_config(model_dir, undecodable, tmp_path)
  want = re.escape(f"{undecodable}: no usable samples (2 skipped: no_frames=1, truncated_video=1)")
  with pytest.raises(jf.DatasetError, match=want):
    cache_cli.build(config, encoder=encoder)
  with pytest.raises(jf.DatasetError, match=want):
    cache_cli.open_source(config, "train")
  # Samples all left out for having more options than the model scores.
  shutil.copytree(built[0], tmp_path / "full" / "train")
  config = jsonl_config(model_dir, dataset, tmp_path)
  config.data.cache_dir = str(tmp_path / "full")
  assert len(cache_cli.open_source(config, "train", max_options=4)) == 5
  with pytest.raises(jf.DatasetError, match=re.escape(
      f"{dataset}: no usable samples (9 skipped: answer_not_in_options=1, missing_video=1, no_frames=1, "
      "too_many_options=5, truncated_video=1)")):
    cache_cli.open_source(config, "train", max_options=2)


def test_a_corrupt_cache_record_is_a_cache_error_naming_it(built, llm, tmp_path):
  """Issue 10: a damaged record read for training/eval raises `CacheError` naming the record and the command
  that rebuilds the cache, never a raw numpy/array_record error or a silently wrong array."""
  cache_dir = copy_cache(built, tmp_path)
  m = fc.read_manifest(cache_dir)
  key, entry = next(iter(m["entries"].items()))
  path = os.path.join(cache_dir, entry["file"])
  record = re.escape(f"{path}: record {entry['index']}")
  corrupt = re.escape(f"entry {key} (video {entry['video']}) of the feature cache {cache_dir} is corrupt; "
                      "rerun `python -m score_jax.cache --config=") + r".*` to rebuild it\."
  data = open(path, "rb").read()

  def damage(new_bytes):
    with open(path, "wb") as f:
      f.write(new_bytes)
  damage(b"\0" * len(data))  # overwritten
  with pytest.raises(fc.CacheError, match=record + r" cannot be read \(.+\); " + corrupt):
    fc.CachedFeatureSource(cache_dir).visual(key)
  damage(data[:len(data) // 2])  # truncated
  src = fc.CachedFeatureSource(cache_dir)
  with pytest.raises(fc.CacheError, match=record + " .*; " + corrupt):
    src.visual(key)
  with pytest.raises(fc.CacheError, match="rerun `python -m score_jax.cache --config="):  # through grain batches
    next(fc.iterate_batches(src, 2, llm.prompts, SUFFIX_LEN, num_threads=1))
  os.remove(path)  # gone
  with pytest.raises(fc.CacheError, match=re.escape(f"{path} is missing (named by "
                                                    f"{os.path.join(cache_dir, fc.MANIFEST)}); ") + corrupt):
    fc.CachedFeatureSource(cache_dir).visual(key)
  damage(data)  # intact bytes, but a manifest whose shape does not fit them (read without checksums)
  m["entries"][key]["shape"] = [3, 5, 7]
  json.dump(m, open(os.path.join(cache_dir, fc.MANIFEST), "w"))
  with pytest.raises(fc.CacheError, match=record + r" cannot be decoded \(ValueError: .*\); " + corrupt):
    fc.CachedFeatureSource(cache_dir, verify_reads=False).visual(key)


def llava_ov_config(model_dir, root, workdir, **overrides):
  """experiments/llava_ov_0_5b.py (every field train/eval read) shrunk to the tiny checkpoint."""
  sys.path.insert(0, os.path.join(REPO, "experiments"))
  import llava_ov_0_5b  # noqa: E402
  c = llava_ov_0_5b.get_config()
  c.workdir = str(workdir)
  c.batch_size = 2
  c.curriculum = "jsonl:3"
  c.model.checkpoint = model_dir
  c.model.mesh = (1, 1, 1)
  c.model.num_frames = FRAMES
  c.model.suffix_len = SUFFIX_LEN
  c.policy.hidden = 16
  c.rl.group_size = 2
  c.rl.ppo_epochs = 1
  c.optim.warmup_steps = 1
  c.data.train_file = str(root / "data.jsonl")
  c.data.eval_file = str(root / "eval.jsonl")
  c.data.cache_dir = str(root / "feature_cache")
  c.data.cache_batch_size = 2
  c.data.decode_threads = 1
  c.data.num_threads = 1
  c.checkpoint_every = 2
  c.log_every = 1
  c.eval.batch_size = 4
  c.eval.ratios = (1.0, 0.25)
  c.eval.methods = ("policy", "uniform_pool", "random")
  c.eval.random_seeds = 1
  for k, v in overrides.items():  # "eval.at_end": False
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def eval_dataset(root):
  """Questions about three of the videos: one with 2 options, one with 5 (more than the 4 letters the
  model scores: left out), one whose video is missing (skipped at build time)."""
  lines = [dict(id="e0", video="videos/v1.mp4", question=QUESTIONS[0], options=OPTIONS[1], answer="B"),
           dict(id="e1", video="videos/v3.mp4", question=QUESTIONS[1], options=OPTIONS[0], answer="D"),
           dict(id="e2", video="videos/v2.mp4", question=QUESTIONS[2], options=["red", "blue"], answer="A"),
           dict(id="e3", video="videos/v0.mp4", question=QUESTIONS[3], options=OPTIONS[0] + ["square"],
                answer="E"),
           dict(id="e4", video="videos/gone.mp4", question=QUESTIONS[0], options=OPTIONS[0], answer="A")]
  (root / "eval.jsonl").write_text("".join(json.dumps(dict(x, task="nextqa")) + "\n" for x in lines))


@pytest.mark.slow  # ~50 s; .ci/run caches a set and evaluates from it; keeps the default run under 15 minutes
def test_train_and_eval_read_the_feature_cache(dataset, model_dir, tmp_path, monkeypatch):
  """Issue 5 end to end: mp4 files + JSONL -> `score_jax.cache` -> train (jsonl stage) and eval (at the end
  of training and `score_jax.eval`) from the cache, with the videos moved away after caching and every
  decode and vision-encoder trace counted."""
  from score_jax import eval as eval_lib
  from score_jax import train as train_lib
  root = tmp_path / "data"
  shutil.copytree(os.path.dirname(dataset), root)
  eval_dataset(root)
  config = llava_ov_config(model_dir, root, tmp_path / "run")
  reports = cache_cli.build(config)
  assert (reports["train"].samples, reports["train"].entries) == (5, 4)
  assert reports["eval"].summary().splitlines()[0] == (
      "eval.jsonl: 5 samples read, 1 skipped (reasons: missing_video=1)")
  assert (reports["eval"].samples, reports["eval"].entries) == (4, 4)

  os.rename(root / "videos", root / "videos_moved")  # nothing may decode from here on
  calls = {"decode": 0, "encode": 0}

  def count(name, fn):
    def wrapped(*args, **kwargs):
      calls[name] += 1
      return fn(*args, **kwargs)
    return wrapped
  monkeypatch.setattr(vd, "read_frames", count("decode", vd.read_frames))
  monkeypatch.setattr(vd, "probe", count("decode", vd.probe))
  monkeypatch.setattr(prefill, "encode_video", count("encode", prefill.encode_video))

  out = train_lib.train(config)
  assert (out["final_step"], out["updates"]) == (3, 3)
  assert sorted(int(d) for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit()) == [2, 3]
  assert calls == {"decode": 0, "encode": 0}  # cached visual tokens only: no video read, no vision tower run
  res = out["eval"]
  assert res["_samples"] == 3  # e3 (5 options) left out, e4 (missing video) skipped when caching
  for key in (("full", 1.0), ("score", 0.25), ("uniform_pool", 0.25), ("random", 0.25)):
    assert 0.0 <= res[key] <= 1.0
  table = (tmp_path / "run" / "eval.md").read_text()
  assert "on 3 held-out samples" in table and "| 25% kept |" in table
  for name in ("score", "uniform_pool", "random"):
    assert f"| {name} |" in table

  # The data iterator's position is in the checkpoint, as for the generated-world stages.
  mngr = checkpointing.manager(str(tmp_path / "run"), config.keep_checkpoints)
  saved = mngr.restore(3, args=ocp.args.Composite(**{
      checkpointing.PER_PROCESS: checkpointing.PerProcessRestore()}))[checkpointing.PER_PROCESS]
  mngr.close()
  src = cache_cli.open_source(config, "train")
  fresh = make_iterator(src, 2, seed=config.seed, num_threads=1)
  for _ in range(3):
    next(fresh)
  resumed = make_iterator(src, 2, seed=config.seed, num_threads=1)
  resumed.set_state(saved["iterators"][0])
  assert list(next(resumed)["id"]) == list(next(fresh)["id"])
  # The eval command on the same cached eval set, with the policy restored from the run's checkpoint.
  again = eval_lib.run(config, [str(tmp_path / "run")], methods=[], out=str(tmp_path / "ev"))["jsonl"]
  assert again["_samples"] == 3
  assert [again[k] for k in (("full", 1.0), ("score", 0.25))] == [res[("full", 1.0)], res[("score", 0.25)]]
  assert "| score |" in (tmp_path / "ev" / "eval.md").read_text()
  assert calls == {"decode": 0, "encode": 0}


def test_train_without_a_cache_decodes_the_videos(dataset, model_dir, tmp_path, monkeypatch):
  """No current cache: the jsonl stage decodes the videos (warned) and runs the vision tower on them."""
  from score_jax import train as train_lib
  root = tmp_path / "data"
  shutil.copytree(os.path.dirname(dataset), root)
  config = llava_ov_config(model_dir, root, tmp_path / "run", **{"curriculum": "jsonl:1", "eval.at_end": False})
  traced = []
  encode = prefill.encode_video
  monkeypatch.setattr(prefill, "encode_video", lambda *a, **k: traced.append(1) or encode(*a, **k))
  assert isinstance(cache_cli.open_source(config, "train"), fc.VideoSampleSource)
  out = train_lib.train(config)
  assert out["updates"] == 1 and traced  # frames went through llm.encode
