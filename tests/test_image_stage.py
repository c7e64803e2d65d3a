"""Issue 11: the `images:N` curriculum stage, pseudo-videos of real PNG/JPEG image QA data."""
import json
import os
import re
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from score_jax import cache as cache_cli
from score_jax import config_checks
from score_jax.data import feature_cache as fc
from score_jax.data import image_feature_cache as ifc
from score_jax.data import image_pseudo_video as ipv
from score_jax.data import jsonl_format as jf
from score_jax.data.image_preprocess import PreprocessSettings, normalize
from score_jax.data.image_qa_format import read_image_jsonl
from score_jax.models import hf_loading, prefill
from score_jax.testing.smoke import override, smoke_config

FRAMES = 8
OPTIONS = ["red", "blue", "green", "cyan"]
VIDEO_KEYS = {"frames", "question", "options", "num_options", "answer", "id", "task"}  # VideoSampleSource's items


def _solid(color, size=(56, 40)):
  return Image.new("RGB", size, color)


def _pattern(kind, size=(56, 40)):
  y, x = np.mgrid[:size[1], :size[0]]
  on = (x // 7) % 2 == 0 if kind == "stripes" else ((x // 8) + (y // 8)) % 2 == 0
  return Image.fromarray(np.where(on[..., None], [250, 240, 20], [10, 30, 200]).astype(np.uint8))


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
  """Four readable images (2 PNG, 2 JPEG; one grayscale), a corrupt one, and a JSONL naming them plus a
  missing image and an answer out of range."""
  root = tmp_path_factory.mktemp("images")
  (root / "img").mkdir()
  _solid((220, 30, 30)).save(root / "img" / "red.png")
  _solid((20, 40, 230)).save(root / "img" / "blue.jpg", quality=95)
  _pattern("stripes").convert("L").save(root / "img" / "stripes.png")  # grayscale: read as RGB
  _pattern("checker").save(root / "img" / "checker.jpg", quality=95)
  (root / "img" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)

  def rec(i, image, answer):
    return dict(id=f"q{i}", image=image, question="what color is the square", options=OPTIONS, answer=answer)
  lines = [rec(0, "img/red.png", 0), rec(1, "img/blue.jpg", "B"), rec(2, "img/stripes.png", "(c)"),
           rec(3, "img/missing.png", "A"), rec(4, "img/checker.jpg", 7), rec(5, "img/red.png", "A"),
           rec(6, str(root / "img" / "checker.jpg"), 3), rec(7, "img/corrupt.png", "D")]
  path = root / "qa.jsonl"
  path.write_text("".join(json.dumps(x) + "\n" for x in lines))
  return str(path)


@pytest.fixture(scope="module")
def vision(tiny_embedded_model):
  """(encoder, module, params, preprocess) of the embedded model's vision side."""
  _, module, params = hf_loading.load_llava_onevision(tiny_embedded_model)
  encoder = fc.VisionEncoder.load(tiny_embedded_model)
  return encoder, module, params, encoder.preprocess


def test_image_jsonl_reader_skips_and_counts_bad_records(image_set):
  ds = read_image_jsonl(image_set)
  assert [s.id for s in ds.samples] == ["q0", "q1", "q2", "q5", "q6", "q7"]
  assert [s.answer for s in ds.samples] == [0, 1, 2, 0, 3, 3]
  assert ds.samples[0].image == os.path.join(os.path.dirname(image_set), "img", "red.png")  # relative to the file
  assert ds.summary() == "qa.jsonl: 8 samples read, 2 skipped (reasons: answer_not_in_options=1, missing_image=1)"
  assert [p.source for p in ds.problems.problems] == [f"{image_set}:4", f"{image_set}:5"]
  with pytest.raises(jf.DatasetError, match=r"qa.jsonl:4 \(sample 'q3'\): image file .*missing.png does not exist"):
    read_image_jsonl(image_set, strict=True)
  # An image PIL cannot read is skipped where it is opened.
  problems = jf.ProblemLog()
  kept = ipv.probe_images(ds.samples, problems)
  assert [s.id for s in kept] == ["q0", "q1", "q2", "q5", "q6"]
  assert [(p.sample_id, p.reason) for p in problems.problems] == [("q7", "unreadable_image")]


def _runs(plan):
  """[(image, length)] of the consecutive runs of a frame plan."""
  cuts = [0] + [t for t in range(1, len(plan)) if plan[t] != plan[t - 1]] + [len(plan)]
  return [(int(plan[a]), b - a) for a, b in zip(cuts, cuts[1:])]


def test_pseudo_video_holds_the_question_image_for_one_segment(image_set):
  plans = [ipv.segment_plan(7, i, i % 4, 4, FRAMES) for i in range(40)]
  for i, plan in enumerate(plans):
    runs = _runs(plan)
    images = [k for k, _ in runs]
    assert plan.shape == (FRAMES,) and 2 <= len(runs) <= 3, runs
    assert images.count(i % 4) == 1 and len(set(images)) == len(images)  # one segment; distinct other images
    assert min(n for _, n in runs) >= 2
    np.testing.assert_array_equal(plan, ipv.segment_plan(7, i, i % 4, 4, FRAMES))  # a function of (seed, i)
  assert {len(_runs(p)) for p in plans} == {2, 3}
  assert len({tuple(p) for p in plans}) > 20
  assert not np.array_equal(np.stack(plans), np.stack([ipv.segment_plan(8, i, i % 4, 4, FRAMES) for i in range(40)]))
  np.testing.assert_array_equal(ipv.segment_plan(0, 3, 0, 1, FRAMES), np.zeros(FRAMES))  # no other image

  ds = read_image_jsonl(image_set)
  samples = ipv.probe_images(ds.samples, ds.problems)
  pre = PreprocessSettings(32)
  src = ipv.ImagePseudoVideoSource(samples, FRAMES, pre, seed=3)
  assert len(src) == 5 and len(src.images) == 4  # q0 and q5 share red.png
  for i in range(len(src)):
    item = src[i]
    assert set(item) == VIDEO_KEYS and item["frames"].shape == (FRAMES, 32, 32, 3)
    assert item["frames"].dtype == np.uint8 and str(item["id"]) == samples[i].id
    plan = src.plan(i)
    for t in range(FRAMES):  # each frame is its image, read as RGB and resized like a video frame
      np.testing.assert_array_equal(item["frames"][t], ipv.image_frame(src.images[plan[t]], pre)[0])
    question = [t for t in range(FRAMES) if src.images[plan[t]] == samples[i].image]
    assert question == list(range(question[0], question[-1] + 1))
    np.testing.assert_array_equal(src[i]["frames"], item["frames"])
  assert ipv.read_image(src.images[2]).shape == (40, 56, 3)  # the grayscale PNG as RGB


def test_cached_tokens_equal_the_decoded_then_encoded_tokens(image_set, vision, tmp_path):
  encoder, module, params, pre = vision
  cache_dir = str(tmp_path / "images")
  report = ifc.build_image_cache(image_set, cache_dir, encoder, batch_size=2)
  assert report.summary().splitlines()[0] == (
      "qa.jsonl: 8 samples read, 3 skipped (reasons: answer_not_in_options=1, missing_image=1, unreadable_image=1)")
  assert (report.samples, report.entries, report.built) == (5, 4, 4)  # one entry per image, not per frame
  m = fc.read_manifest(cache_dir)
  assert {e["video"] for e in m["entries"].values()} == {"img/red.png", "img/blue.jpg", "img/stripes.png",
                                                          "img/checker.jpg"}  # q6's absolute path too
  assert {tuple(e["shape"][:1]) for e in m["entries"].values()} == {(1,)}
  cached = ifc.CachedImagePseudoVideoSource(cache_dir, FRAMES, seed=3, dataset_path=image_set)
  ds = read_image_jsonl(image_set)
  decoded = ipv.ImagePseudoVideoSource(ipv.probe_images(ds.samples, ds.problems), FRAMES, pre, seed=3)
  assert len(cached) == len(decoded) == 5
  for i in range(len(cached)):
    c, d = cached[i], decoded[i]
    assert set(c) == VIDEO_KEYS - {"frames"} | {"visual"}
    for k in ("question", "options", "num_options", "answer", "id"):
      np.testing.assert_array_equal(c[k], d[k])
    tokens = prefill.encode_video(module, params, jnp.asarray(normalize(d["frames"], pre)[None]))[0]
    np.testing.assert_allclose(c["visual"], np.asarray(tokens), atol=1e-5)
  assert ifc.build_image_cache(image_set, cache_dir, encoder).reused == 4
  # A replaced image makes the cache stale; a corrupt record is a CacheError naming the rebuild command.
  root = tmp_path / "copy"
  shutil.copytree(os.path.dirname(image_set), root)
  copy = str(root / "qa.jsonl")
  assert fc.cache_status(cache_dir, dataset_path=copy) is None
  _solid((0, 200, 0)).save(root / "img" / "red.png")
  assert "red.png changed since the feature cache" in fc.cache_status(cache_dir, dataset_path=copy)
  key = next(iter(m["entries"]))
  m["entries"][key]["sha256"] = "0" * 64
  json.dump(m, open(os.path.join(cache_dir, fc.MANIFEST), "w"))
  with pytest.raises(fc.CacheError, match=r"does not match its sha256 checksum; .*rerun `python -m score_jax.cache"):
    src = ifc.CachedImagePseudoVideoSource(cache_dir, FRAMES, seed=3)
    for i in range(len(src)):
      src[i]
  assert ifc.build_image_cache(image_set, cache_dir, encoder).rebuilt == 1


def test_an_images_stage_needs_the_image_file(tiny_embedded_model, tmp_path):
  config = smoke_config(tmp_path, tiny_embedded_model, curriculum="images:4,video:2")
  with pytest.raises(ValueError, match=re.escape("has an 'images' stage: set config.data.image_file")):
    config_checks.check_data_files(config, config_checks.parse_curriculum(config.curriculum), "world")
  with pytest.raises(ValueError, match="kind must be one of"):
    config_checks.parse_curriculum("imgs:3")


@pytest.mark.slow  # ~60 s (two trainings); the image cache and pseudo-videos stay in the default run; keeps the default run under 15 minutes
def test_images_then_video_curriculum_trains_from_the_image_cache(image_set, tiny_embedded_model, tmp_path,
                                                                   monkeypatch, caplog):
  """End to end: PNG/JPEG + JSONL -> `score_jax.cache` (images split) -> train `images:4,video:2`, the images
  stage reading only cached tokens; without a current cache it reads the images (warned)."""
  from score_jax import train as train_lib
  config = smoke_config(tmp_path / "run", tiny_embedded_model, curriculum="images:4,video:2")
  override(config, **{"data.image_file": image_set, "data.cache_dir": str(tmp_path / "caches"),
                      "eval.samples": 4, "eval.sets": ("clean",), "eval.methods": ("policy", "uniform_pool")})
  config_checks.validate_train_config(config)
  caplog.set_level("WARNING")
  decoded = cache_cli.open_source(config, cache_cli.IMAGES)
  assert isinstance(decoded, ipv.ImagePseudoVideoSource) and len(decoded) == 5
  assert "reading images on every read" in caplog.text
  reports = cache_cli.build(config)
  assert list(reports) == ["images"] and reports["images"].entries == 4
  assert os.path.isfile(tmp_path / "caches" / "images" / fc.MANIFEST)
  cached = cache_cli.open_source(config, cache_cli.IMAGES)
  assert isinstance(cached, ifc.CachedImagePseudoVideoSource) and len(cached) == 5
  reads = []
  monkeypatch.setattr(ipv, "read_image", lambda *a: reads.append(a) or pytest.fail("read an image"))
  out = train_lib.train(config)
  assert (out["final_step"], out["updates"]) == (6, 6) and not reads
  assert out["eval"]["_samples"] == 4
