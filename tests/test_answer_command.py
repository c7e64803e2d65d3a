"""`python -m score_jax.answer` on a generated mp4: the embedded model and a tiny random Hugging Face checkpoint.

The policy is the smoke run's (session fixture `uninterrupted`, trained with the tiny embedded model). The
tiny HF checkpoint has the embedded model's decoder width, token grid and frame count, so the same policy
runs against it. The overlay PNG is read back: a cell that shows the video's own pixels is a kept token, a
cell markedly darker than them a dropped one.
"""
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from score_jax import answer
from score_jax.compress.selection import budget
from score_jax.data import video_decode as vd
from score_jax.testing.smoke import REPO, smoke_config
from score_jax.viz import overlay

TOKENS = 128  # 8 frames x 16 tokens


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  """(mp4 path, its frames uint8 [8, 64, 64, 3], question, options) of held-out world sample 3, lossless."""
  from score_jax.embedded.world_text import WORLD
  from score_jax.world.sources import WorldSource
  item = WorldSource(WORLD, kind="video", split="heldout", size=4)[3]
  path = str(tmp_path_factory.mktemp("clip") / "clip.mp4")
  vd.write_video(path, item["frames"], lossless=True)
  return path, item["frames"], str(item["question"]), [str(o) for o in item["options"]]


def cell_states(png: str, frames: np.ndarray, scale: int) -> np.ndarray:
  """int [T, 16] from an overlay PNG: 1 where a cell shows the frame's pixels, 0 where it is dimmed, -1 else."""
  img = np.asarray(Image.open(png).convert("RGB")).astype(int)
  _, origins = overlay.frame_origins(len(frames), frames.shape[1:3], scale)
  out = np.full((len(frames), 16), -1)
  for f, (oy, ox) in enumerate(origins):
    big = np.repeat(np.repeat(frames[f].astype(int), scale, 0), scale, 1)
    for c in range(16):
      cell = 16 * scale
      ys, xs = slice((c // 4) * cell, (c // 4 + 1) * cell), slice((c % 4) * cell, (c % 4 + 1) * cell)
      got, src = img[oy:oy + 64 * scale, ox:ox + 64 * scale][ys, xs], big[ys, xs]
      if np.array_equal(got, src):
        out[f, c] = 1
      elif (got <= src).all() and got.sum() < 0.5 * src.sum():
        out[f, c] = 0
  return out


@pytest.mark.slow  # ~35 s; the answer command on an HF checkpoint stays in the default run; keeps the default run under 15 minutes
def test_embedded_command_answers_and_its_overlay_dims_every_dropped_token(uninterrupted, clip, tmp_path):
  workdir = uninterrupted[0]
  video, frames, question, options = clip
  png = tmp_path / "overlay.png"
  cmd = [sys.executable, "-m", "score_jax.answer", f"--checkpoint={workdir}", f"--video={video}",
         f"--question={question}", f"--options={','.join(options)}", "--ratio=0.25", f"--out={png}"]
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  chosen = re.search(r"^answer: ([A-D])\. (\w+)$", out, re.M)
  assert chosen and options["ABCD".index(chosen[1])] == chosen[2]
  k = budget(TOKENS, 0.25)
  assert f"retention: 25.0% ({k} of {TOKENS} visual tokens" in out
  per_frame = [int(x) for x in re.search(r"per frame ([\d, ]+)\)", out)[1].split(", ")]
  for stage in answer.STAGES:
    assert re.search(rf"^{stage}\s+\d+\.\d\s+(\d+\.\d|-)$", out, re.M), stage
  states = cell_states(str(png), frames, overlay.default_scale(64))
  assert (states >= 0).all()  # every cell is exactly kept or dimmed
  assert int((states == 0).sum()) == TOKENS - k and int((states == 1).sum()) == k
  assert (states == 1).sum(-1).tolist() == per_frame
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert again.returncode == 1
  assert again.stderr.strip().splitlines()[-1].startswith(f"error: --out {png} already exists")


@pytest.fixture(scope="module")
def hf_model(uninterrupted, tmp_path_factory):
  pytest.importorskip("torch")
  from score_jax.testing.tiny_checkpoint import write_tiny_llava
  folder = write_tiny_llava(str(tmp_path_factory.mktemp("tiny_hf")))
  config = smoke_config("/unused", folder, **{"model.kind": "hf", "model.num_frames": 8,
                                             "model.answer_format": "letter"})
  return answer.load_model(config, str(uninterrupted[0]))


def test_hf_checkpoint_generates_without_options_and_reads_letters_with_them(hf_model, clip, tmp_path):
  video, frames, question, options = clip
  ans = answer.answer_question(hf_model, video, question, None, ratio=0.1)
  k = budget(TOKENS, 0.1)
  assert ans.num_kept == k and ans.kept.shape == (8, 16)
  assert isinstance(ans.text, str) and "generate" in ans.timings and "generate" in ans.full_timings
  assert ans.timings["time to first token"] == pytest.approx(sum(ans.timings[s] for s in answer.STAGES[:4]))
  png = answer.write_overlay(ans, str(tmp_path / "hf.png"))
  states = cell_states(png, frames, overlay.default_scale(64))
  assert int((states == 0).sum()) == TOKENS - k and int((states == 1).sum()) == k
  assert (states == 1).tolist() == ans.kept.tolist()
  lettered = answer.answer_question(hf_model, video, question, options[:3], ratio=0.5)
  assert lettered.num_kept == TOKENS // 2 and lettered.choice in (0, 1, 2)
  assert lettered.text == f"{'ABC'[lettered.choice]}. {options[lettered.choice]}"
  with pytest.raises(answer.AnswerError, match="--adaptive needs an adaptive policy"):
    answer.answer_question(hf_model, video, question, options, adaptive=True)


def test_bad_requests_get_one_error_line(clip, tmp_path):
  video = clip[0]
  with pytest.raises(answer.AnswerError, match=r"--ratio=1.5 must be in \(0, 1\]"):
    answer.check_request(video, "q", 1.5, False, None)
  with pytest.raises(answer.AnswerError, match="either --ratio or --adaptive"):
    answer.check_request(video, "q", 0.1, True, None)
  with pytest.raises(answer.AnswerError, match="2 to 10 non-empty comma-separated options, got 1"):
    answer.parse_options("red")
  with pytest.raises(answer.AnswerError, match="got 11"):
    answer.parse_options(",".join("abcdefghijk"))
  with pytest.raises(answer.AnswerError, match="one is empty"):
    answer.parse_options("red,,blue")
  with pytest.raises(answer.AnswerError, match="folder does not exist"):
    answer.check_request(video, "q", None, False, str(tmp_path / "nowhere" / "o.png"))
  missing = tmp_path / "missing.mp4"
  done = subprocess.run([sys.executable, "-m", "score_jax.answer", f"--checkpoint={tmp_path}", f"--video={missing}",
                         "--question=what color"], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert done.returncode == 1 and "Traceback" not in done.stderr
  assert done.stderr.strip().splitlines()[-1] == f"error: --video {missing}: no such video file."
