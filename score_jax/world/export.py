"""Generated-world samples written as a real dataset: mp4 files plus a JSONL file (`jsonl_format`).

    python -m score_jax.world.export --out=/tmp/world_jsonl --split=heldout --samples=16 [--nolossless]

The result goes through exactly the path a user's videos take (`score_jax.cache`, the "jsonl"
curriculum stage, `config.eval.source="jsonl"`); CI's clean-environment smoke run uses it. An
existing `data.jsonl` in `--out` is never replaced.
"""
from __future__ import annotations

import functools
import os
import sys

from absl import app, flags

from score_jax.data import jsonl_format as jf
from score_jax.data import video_decode as vd
from score_jax.world.sources import WorldSource
from score_jax.embedded.world_text import WORLD

DATASET_FILE = "data.jsonl"


def export(out_dir: str, split: str = "heldout", samples: int = 16, lossless: bool = True, fps: float = 8.0
           ) -> str:
  """Writes `samples` world videos of `split` to out_dir/videos and out_dir/data.jsonl; returns its path."""
  path = os.path.join(out_dir, DATASET_FILE)
  if os.path.exists(path):
    raise FileExistsError(f"{path} already exists; pass another --out (nothing was overwritten).")
  src = WorldSource(WORLD, kind="video", split=split, size=samples)
  os.makedirs(os.path.join(out_dir, "videos"), exist_ok=True)
  records = []
  for i in range(samples):
    item = src[i]
    video = os.path.join("videos", f"{split}_{i:05d}.mp4")
    vd.write_video(os.path.join(out_dir, video), item["frames"], fps=fps, lossless=lossless)
    records.append({"id": f"world-{split}-{i}", "video": video, "question": str(item["question"]),
                    "options": [str(o) for o in item["options"]], "answer": jf.LETTERS[int(item["answer"])],
                    "question_type": str(item["question_type"])})
  jf.write_jsonl(records, path)
  return path


def _define_flags() -> dict:
  return dict(
      out=flags.DEFINE_string("out", None, "output folder (data.jsonl + videos/)"),
      split=flags.DEFINE_enum("split", "heldout", ["train", "heldout"], "world split"),
      samples=flags.DEFINE_integer("samples", 16, "number of videos"),
      lossless=flags.DEFINE_bool("lossless", True, "lossless H.264 (else yuv420p at default quality)"),
  )


def main(argv, flag_values: dict):
  del argv
  v = {name: holder.value for name, holder in flag_values.items()}
  if not v["out"]:
    sys.exit("Pass --out=FOLDER")
  try:
    print(export(os.path.expanduser(v["out"]), v["split"], v["samples"], v["lossless"]))
  except FileExistsError as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
