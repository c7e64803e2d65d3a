"""Real mp4 files written with PyAV: decoding, frame sampling, preprocessing, and the JSONL reader's checks."""
import json
import os

import numpy as np
import pytest
from absl import logging
from PIL import Image

from score_jax.data import image_preprocess as ip
from score_jax.data import jsonl_format as jf
from score_jax.data import video_decode as vd
from score_jax.data.feature_cache import decode_dataset
from score_jax.models.preprocess import normalize_frames


def frames_of(n, h=24, w=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def truncated_copy(src, dst, fraction=0.5):
  data = open(src, "rb").read()
  with open(dst, "wb") as f:
    f.write(data[:int(len(data) * fraction)])
  return dst


def test_decoded_frames_equal_written_frames(tmp_path):
  written = frames_of(40)
  path = vd.write_video(str(tmp_path / "a.mp4"), written, fps=10)
  info = vd.probe(path)
  assert (info.num_frames, info.fps, info.width, info.height) == (40, 10.0, 32, 24)
  idx = vd.sample_indices(info, 6)
  np.testing.assert_array_equal(idx, np.linspace(0, 39, 6, dtype=int))  # the reference sampling
  np.testing.assert_array_equal(vd.decode_video(path, 6), written[idx])


def test_window_and_seeking(tmp_path, monkeypatch):
  written = frames_of(60, seed=1)
  path = vd.write_video(str(tmp_path / "b.mp4"), written, fps=10, gop=6)
  # window [1.5, 4.0] s at 10 fps: frames 15..40
  got = vd.decode_video(path, 5, start=1.5, end=4.0)
  np.testing.assert_array_equal(got, written[15 + np.linspace(0, 25, 5, dtype=int)])
  monkeypatch.setattr(vd, "SEEK_GAP_FRAMES", 4)  # far-apart indices: seek to keyframes
  idx = [3, 50, 11, 59, 50, 0, 27]
  np.testing.assert_array_equal(vd.read_frames(path, idx), written[idx])


def test_lossy_video_within_codec_tolerance(tmp_path):
  y, x = np.mgrid[0:32, 0:48]
  written = np.stack([np.stack([(x * 5 + t * 7) % 256, (y * 7) % 256, np.full_like(x, 40 * t % 256)], -1)
                      for t in range(8)]).astype(np.uint8)
  path = vd.write_video(str(tmp_path / "c.mp4"), written, fps=8, lossless=False)
  got = vd.decode_video(path, 8)
  assert np.abs(got.astype(int) - written).mean() < 6.0


def test_decode_errors_name_the_file(tmp_path):
  good = vd.write_video(str(tmp_path / "good.mp4"), frames_of(20), fps=10, faststart=True)
  truncated = truncated_copy(good, str(tmp_path / "truncated.mp4"))
  with pytest.raises(vd.TruncatedVideoError, match="truncated.mp4.*truncated or corrupt"):
    vd.decode_video(truncated, 8)
  cut_index = truncated_copy(vd.write_video(str(tmp_path / "plain.mp4"), frames_of(20), fps=10),
                             str(tmp_path / "cut_index.mp4"))  # index at the end: cannot even open
  with pytest.raises(vd.VideoDecodeError, match="cut_index.mp4: cannot open") as e:
    vd.decode_video(cut_index, 8)
  assert e.value.reason == jf.UNREADABLE_VIDEO
  with pytest.raises(vd.MissingVideoError, match="nothere.mp4: no such video file"):
    vd.decode_video(str(tmp_path / "nothere.mp4"), 8)
  with pytest.raises(vd.NoFramesError, match=r"good.mp4: no frames in the window \[5.0, 6.0\] s") as e:
    vd.decode_video(good, 8, start=5.0, end=6.0)  # the video ends at 2 s
  assert e.value.reason == jf.NO_FRAMES


def lmms_eval_indices(total_frame_num, max_frames_num):
  """`LlavaOneVision.load_video` in lmms-eval @75571cfe (lmms_eval/models/simple/llava_onevision.py), as read."""
  return np.linspace(0, total_frame_num - 1, max_frames_num, dtype=int).tolist()


def test_short_videos_repeat_frames_as_lmms_eval_does(tmp_path):
  """Issue 12: a 20-frame video sampled at 32 frames is not dropped; its indices are lmms-eval's."""
  written = frames_of(20, seed=3)
  path = vd.write_video(str(tmp_path / "twenty.mp4"), written, fps=10)
  info = vd.probe(path)
  idx = vd.sample_indices(info, 32)
  assert idx.tolist() == lmms_eval_indices(20, 32)
  assert idx.tolist()[:6] == [0, 0, 1, 1, 2, 3] and sorted(set(idx.tolist())) == list(range(20))
  frames = vd.decode_video(path, 32)
  assert frames.shape == (32, 24, 32, 3)
  np.testing.assert_array_equal(frames, written[idx])
  for n in (1, 7, 19, 20, 21, 64):  # every length: below, at and above the video's frame count
    assert vd.sample_indices(info, n).tolist() == lmms_eval_indices(20, n)
  one = vd.write_video(str(tmp_path / "one.mp4"), written[:1], fps=10)
  np.testing.assert_array_equal(vd.decode_video(one, 4), np.repeat(written[:1], 4, axis=0))
  window = vd.sample_indices(info, 8, start=0.5, end=1.0)  # 6 frames in the window: 5..10
  assert window.tolist() == [5 + i for i in lmms_eval_indices(6, 8)]


def test_preprocess_settings_and_resize(tmp_path):
  folder = tmp_path / "ckpt"
  folder.mkdir()
  (folder / "config.json").write_text(json.dumps({"model_type": "llava_onevision",
                                                  "vision_config": {"image_size": 20}}))
  s = ip.PreprocessSettings.from_folder(str(folder))
  assert (s.image_size, s.mean, s.std, s.resample) == (20, (0.5,) * 3, (0.5,) * 3, "bicubic")
  (folder / "preprocessor_config.json").write_text(json.dumps(
      {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4], "resample": 3, "rescale_factor": 1 / 255,
       "size": {"height": 20, "width": 20}}))
  s = ip.PreprocessSettings.from_folder(str(folder))
  assert s.mean == (0.4, 0.5, 0.6) and s.std == (0.2, 0.3, 0.4) and s.source.endswith("preprocessor_config.json")
  frames = frames_of(3, 24, 32)
  out = ip.preprocess_frames(frames, s)
  want = np.stack([np.asarray(Image.fromarray(f).resize((20, 20), Image.Resampling.BICUBIC)) for f in frames])
  np.testing.assert_allclose(out, normalize_frames(want, s.mean, s.std), atol=1e-6)
  assert out.shape == (3, 20, 20, 3) and out.dtype == np.float32
  (folder / "preprocessor_config.json").write_text(json.dumps({"rescale_factor": 0.5}))
  with pytest.raises(ip.PreprocessError, match="preprocessor_config.json: rescale_factor=0.5"):
    ip.PreprocessSettings.from_folder(str(folder))


def write_dataset(root, lines):
  path = os.path.join(root, "data.jsonl")
  with open(path, "w") as f:
    for line in lines:
      f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
  return path


def q(video, answer="A", **kw):
  return dict(video=video, question="what shape is moving", options=["red", "blue", "green", "cyan"],
              answer=answer, **kw)


@pytest.fixture()
def video_dir(tmp_path):
  (tmp_path / "videos").mkdir()
  for i in range(3):
    vd.write_video(str(tmp_path / "videos" / f"v{i}.mp4"), frames_of(16, seed=i), fps=8, faststart=True)
  truncated_copy(str(tmp_path / "videos" / "v0.mp4"), str(tmp_path / "videos" / "truncated.mp4"))
  vd.write_video(str(tmp_path / "videos" / "short.mp4"), frames_of(3, seed=5), fps=8)
  return tmp_path


def test_jsonl_reader_skips_bad_annotations(video_dir, monkeypatch):
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
  path = write_dataset(str(video_dir), [
      q("videos/v0.mp4", id="ok0"),
      q("videos/v1.mp4", answer="E", id="bad_answer"),
      q("videos/missing.mp4", id="missing"),
      "{not json",
      {"video": "videos/v2.mp4", "question": "q", "answer": "A", "id": "no_options"},
      q("videos/v2.mp4", answer="b", id="ok1", start=0.5, end=1.5, task="count"),
      q("videos/v2.mp4", id="ok1"),
      "",
      q(str(video_dir / "videos" / "v1.mp4"), answer="D"),
  ])
  ds = jf.read_jsonl(path)
  assert [s.id for s in ds.samples] == ["ok0", "ok1", "line9"]
  ok1 = ds.samples[1]
  assert ok1.video == str(video_dir / "videos" / "v2.mp4") and ok1.answer == 1 and ok1.answer_letter == "B"
  assert (ok1.start, ok1.end, ok1.meta) == (0.5, 1.5, {"task": "count"})
  assert ds.samples[2].answer == 3 and ds.samples[2].video == str(video_dir / "videos" / "v1.mp4")
  assert ds.summary() == ("data.jsonl: 8 samples read, 5 skipped (reasons: answer_not_in_options=1, bad_json=1, "
                          "duplicate_id=1, missing_field=1, missing_video=1)")
  text = "\n".join(warnings)
  assert "data.jsonl:2 (sample 'bad_answer'): answer 'E' is not among the options (letters A, B, C, D)" in text
  assert "data.jsonl:3 (sample 'missing'): video file" in text and "missing.mp4 does not exist" in text
  assert "data.jsonl:4: invalid JSON" in text
  assert "data.jsonl:5 (sample 'no_options'): missing field 'options'" in text
  with pytest.raises(jf.DatasetError, match=r"data.jsonl:2 \(sample 'bad_answer'\): answer 'E' is not among"):
    jf.read_jsonl(path, strict=True)


def test_a_line_that_is_not_utf8_is_one_skip_with_its_line_number(video_dir, monkeypatch):
  """Issue 10: one non-UTF-8 byte spoils its own line only (counted, line number named), not the read."""
  warnings = []
  monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
  good = [json.dumps(q("videos/v0.mp4", id="ok0")).encode(), json.dumps(q("videos/v1.mp4", id="ok1")).encode()]
  bad = json.dumps(q("videos/v2.mp4", id="latin1")).encode().replace(b"shape", b"sh\xe4pe")
  path = video_dir / "data.jsonl"
  path.write_bytes(b"\n".join([b"\xef\xbb\xbf" + good[0], bad, b"# caf\xe9: a comment in latin-1", b"{not json",
                                good[1], b"\xff\xfe", b""]))
  ds = jf.read_jsonl(str(path))
  assert [s.id for s in ds.samples] == ["ok0", "ok1"]
  assert ds.summary() == "data.jsonl: 5 samples read, 3 skipped (reasons: bad_encoding=2, bad_json=1)"
  assert [(p.source, p.reason) for p in ds.problems.problems] == [
      (f"{path}:2", "bad_encoding"), (f"{path}:4", "bad_json"), (f"{path}:6", "bad_encoding")]
  col = bad.index(b"\xe4") + 1
  assert str(ds.problems.problems[0]) == (
      f"{path}:2: not UTF-8 text (byte 0xe4 at position {col} of the line); re-save the file as UTF-8 [bad_encoding]")
  assert "data.jsonl:6: not UTF-8 text (byte 0xff at position 1 of the line)" in "\n".join(warnings)
  with pytest.raises(jf.DatasetError, match=r"data.jsonl:2: not UTF-8 text \(byte 0xe4 .*\[bad_encoding\] \(strict"):
    jf.read_jsonl(str(path), strict=True)


def test_no_usable_samples_message():
  e = jf.no_usable_samples("data/x.jsonl", {"missing_video": 1, "bad_json": 2})
  assert isinstance(e, jf.DatasetError)
  assert str(e) == "data/x.jsonl: no usable samples (3 skipped: bad_json=2, missing_video=1)"
  assert str(jf.no_usable_samples("e.jsonl", {})) == "e.jsonl: no usable samples (the file holds no sample lines)"


def test_decoding_skips_bad_videos_and_processes_the_rest(video_dir):
  path = write_dataset(str(video_dir), [q("videos/v0.mp4", id="a"), q("videos/truncated.mp4", id="trunc"),
                                        q("videos/short.mp4", id="short"), q("videos/v1.mp4", id="b"),
                                        q("videos/v2.mp4", id="late", start=10.0, end=11.0)])
  ds = jf.read_jsonl(path)
  settings = ip.PreprocessSettings(image_size=16)
  got = list(decode_dataset(ds.samples, 8, settings, ds.problems))
  assert [s.id for s, _ in got] == ["a", "short", "b"]  # 3 frames sampled at 8 repeat frames
  want = ip.preprocess_frames(vd.decode_video(str(video_dir / "videos" / "v1.mp4"), 8), settings)
  np.testing.assert_array_equal(got[2][1], want)
  short = ip.preprocess_frames(frames_of(3, seed=5)[lmms_eval_indices(3, 8)], settings)
  np.testing.assert_array_equal(got[1][1], short)  # lossless mp4: frames 0, 0, 0, 0, 1, 1, 1, 2
  assert ds.summary() == "data.jsonl: 5 samples read, 2 skipped (reasons: no_frames=1, truncated_video=1)"
  problems = {p.sample_id: str(p) for p in ds.problems.problems}
  assert "truncated.mp4: the stream ended" in problems["trunc"] or "truncated.mp4: decoding failed" in problems["trunc"]
  assert "v2.mp4: no frames in the window [10.0, 11.0] s" in problems["late"]
  strict = jf.read_jsonl(path, strict=True)
  with pytest.raises(jf.DatasetError, match="truncated.mp4"):
    list(decode_dataset(strict.samples, 8, settings, strict.problems))


def test_write_jsonl_round_trip(tmp_path):
  path = str(tmp_path / "sub" / "out.jsonl")
  rec = {"video": "v.mp4", "question": "why", "options": ["a", "b"], "answer": "B", "id": "x", "start": None,
         "extra": 3}
  jf.write_jsonl([rec], path)
  line = open(path).read().strip()
  assert line == '{"id": "x", "video": "v.mp4", "question": "why", "options": ["a", "b"], "answer": "B", "extra": 3}'
  s = jf.read_jsonl(path, check_videos=False).samples[0]
  assert jf.sample_record(s, str(tmp_path / "sub"))["video"] == "v.mp4"
