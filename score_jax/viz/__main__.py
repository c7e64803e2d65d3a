"""Regenerate the pictures of a trained policy: overlay, kept tokens per frame, accuracy versus retention.

    python -m score_jax.viz --checkpoint=workdirs/seeds/seed_0 --runs=workdirs/seeds --out=docs/

Writes `overlay.png` and `kept_per_frame.png` (the policy of `--checkpoint` on one video, through
`score_jax.answer`: `--video` with `--question`/`--options`, or by default the generated world's held-out
video `--sample`, written as a lossless mp4 first) and `curve.png` (accuracy versus retention, mean ± std
over the runs' eval.json: `--runs` names files, run folders or `benchmarks/seeds.py` output folders).
Either part can be left out (no `--checkpoint`, no `--runs`). Existing files are refused unless
`--overwrite`.
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile

from absl import app, flags
from ml_collections import config_flags

OVERLAY, BUDGET, CURVE = "overlay.png", "kept_per_frame.png", "curve.png"


def _define_flags() -> dict:
  return dict(
      config=config_flags.DEFINE_config_file("config", None, "experiment config (default: the checkpoint's own)"),
      checkpoint=flags.DEFINE_string("checkpoint", None, "policy workdir for the overlay and the per-frame chart"),
      video=flags.DEFINE_string("video", None, "video (default: a generated held-out world video)"),
      question=flags.DEFINE_string("question", None, "question about --video"),
      options=flags.DEFINE_string("options", None, "comma-separated options for --question"),
      sample=flags.DEFINE_integer("sample", 0, "held-out world sample shown when no --video is given"),
      ratio=flags.DEFINE_float("ratio", None, "retention ratio (default: the policy's rl.ratio)"),
      adaptive=flags.DEFINE_bool("adaptive", False, "the keep/drop policy's own budget per video"),
      runs=flags.DEFINE_list("runs", [], "eval.json files, run folders or seeds folders for the curve"),
      held_out_set=flags.DEFINE_string("set", None, "held-out set of the curve (default: the first)"),
      out=flags.DEFINE_string("out", None, "output folder"),
      overwrite=flags.DEFINE_bool("overwrite", False, "replace existing PNG files"),
  )


def world_clip(folder: str, sample: int) -> tuple[str, str, str]:
  """(mp4 path, question, comma-joined options) of held-out world sample `sample`, exported to `folder`
  (`score_jax.world.export`, lossless)."""
  import json
  from score_jax.world.export import export
  with open(export(folder, "heldout", sample + 1)) as f:
    record = [json.loads(line) for line in f][sample]
  return os.path.join(folder, record["video"]), record["question"], ",".join(record["options"])


def policy_pictures(v: dict, out: str) -> list[str]:
  from score_jax import answer
  from score_jax.viz import budget, files
  with tempfile.TemporaryDirectory() as tmp:
    video, question, options = v["video"], v["question"], v["options"]
    if not video:
      video, question, options = world_clip(tmp, v["sample"])
    elif not question:
      raise answer.AnswerError("--video needs --question (and optionally --options).")
    answer.check_request(video, question, v["ratio"], v["adaptive"], None)
    model = answer.load_model(v["config"], v["checkpoint"])
    ans = answer.answer_question(model, video, question, answer.parse_options(options), v["ratio"], v["adaptive"])
  print(f"{question} -> {ans.text} (all tokens: {ans.full_text}), {ans.retention:.1%} kept")
  paths = [answer.write_overlay(ans, os.path.join(out, OVERLAY), v["overwrite"])]
  fig = budget.kept_per_frame_figure({model.run_config.method: ans.kept}, ans.kept.shape[1],
                                     title=f"kept tokens per frame ({ans.retention:.0%} of {ans.kept.size})")
  return paths + [files.save_figure(fig, os.path.join(out, BUDGET), v["overwrite"])]


def main(argv, flag_values: dict):
  del argv
  import matplotlib
  matplotlib.use("Agg")
  from score_jax import answer
  from score_jax import eval as eval_lib
  from score_jax.data import video_decode
  from score_jax.viz import curves, files
  v = {name: holder.value for name, holder in flag_values.items()}
  if not v["out"] or not (v["checkpoint"] or v["runs"]):
    sys.exit("error: pass --out=FOLDER and --checkpoint=WORKDIR and/or --runs=DIR[,DIR]")
  out = os.path.expanduser(v["out"])
  try:
    targets = ([OVERLAY, BUDGET] if v["checkpoint"] else []) + ([CURVE] if v["runs"] else [])
    present = [t for t in targets if os.path.exists(os.path.join(out, t))]
    if present and not v["overwrite"]:
      raise FileExistsError(f"{out} already holds {present}; pass --overwrite to replace them.")
    os.makedirs(out, exist_ok=True)
    written = []
    if v["runs"]:  # first: it needs no model, so a bad --runs fails fast
      fig = curves.accuracy_curve_figure(curves.load_runs(v["runs"]), v["held_out_set"])
      written.append(files.save_figure(fig, os.path.join(out, CURVE), v["overwrite"]))
    if v["checkpoint"]:
      written += policy_pictures(v, out)
  except (answer.AnswerError, eval_lib.CheckpointError, video_decode.VideoDecodeError, FileExistsError,
          FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  print("\n".join(f"written: {p}" for p in written))


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
