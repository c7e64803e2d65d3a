"""Debug record of the samples each process trains on (multi-host tests): set SCORE_JAX_SAMPLE_LOG=DIR.

`train` then appends one JSON line per step to DIR/process_<i>.jsonl: {"step": 3, "stage": 1, "ids": [...]}
(the batch's `sample_index`, else its `id`). Unset (the normal path), `from_env` returns None and nothing
is recorded.
"""
from __future__ import annotations

import json
import os

ENV = "SCORE_JAX_SAMPLE_LOG"


class SampleLog:
  def __init__(self, folder: str, process_index: int):
    os.makedirs(folder, exist_ok=True)
    self.path = os.path.join(folder, f"process_{process_index}.jsonl")

  def write(self, step: int, stage: int, batch: dict) -> None:
    ids = ([int(i) for i in batch["sample_index"]] if "sample_index" in batch
           else [str(i) for i in batch.get("id", [])])
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": step, "stage": stage, "ids": ids}) + "\n")


def from_env(process_index: int) -> SampleLog | None:
  folder = os.environ.get(ENV)
  return SampleLog(folder, process_index) if folder else None


def read(folder: str, process_index: int) -> list[dict]:
  """The records of one process, in order."""
  with open(os.path.join(folder, f"process_{process_index}.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]
