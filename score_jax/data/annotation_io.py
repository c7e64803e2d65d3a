"""Reading benchmark annotation tables and their fields (shared by every benchmark converter).

Annotation tables may be .json (a list, or a dict holding one), .jsonl, .csv or .parquet (pyarrow).
Videos are found whatever the case of their extension (`score_jax.data.video_files.find_video`).
"""
from __future__ import annotations

import csv
import json
import os
import re

from score_jax.data import jsonl_format as jf

_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])\s*[\.\):]\s*")


class LayoutError(ValueError):
  """Benchmark files that are not where or what the layout expects."""


def read_table(path: str) -> list[dict]:
  """Rows of a .json / .jsonl / .csv / .parquet annotation file as dicts."""
  if not os.path.isfile(path):
    raise LayoutError(f"Annotation file {path} does not exist.")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".parquet":
    try:
      import pyarrow.parquet as pq
    except ImportError:
      raise LayoutError(f"{path}: reading parquet needs `pip install pyarrow` (or convert it to json).") from None
    return pq.read_table(path).to_pylist()
  with open(path, encoding="utf-8") as f:
    if ext == ".csv":
      return list(csv.DictReader(f))
    if ext == ".jsonl":
      return [json.loads(line) for line in f if line.strip()]
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise LayoutError(f"{path} is not valid JSON ({e}).") from e
  if isinstance(data, dict):
    lists = [v for v in data.values() if isinstance(v, list)]
    if len(lists) != 1:
      raise LayoutError(f"{path}: expected a list of records (or a dict holding exactly one list).")
    data = lists[0]
  if not isinstance(data, list):
    raise LayoutError(f"{path}: expected a list of records, got {type(data).__name__}.")
  return data


def strip_letter(option: str, index: int) -> str:
  """"B. A cup." -> "A cup." when the prefix is the option's own letter."""
  m = _LETTER_PREFIX.match(option)
  if m and m.group(1) == jf.LETTERS[index]:
    return option[m.end():].strip()
  return option.strip()


def need(row: dict, *fields: str) -> list:
  """The values of `fields` in `row`; `BadSample(missing_field)` for one that is absent or empty."""
  for f in fields:
    if row.get(f) in (None, ""):
      raise jf.BadSample(jf.MISSING_FIELD, f"missing field {f!r}")
  return [row[f] for f in fields]


def letter(index, num_options: int) -> str:
  """The letter of a 0-based answer index; `BadSample` if it is not one of the `num_options`."""
  try:
    i = int(index)
  except (TypeError, ValueError):
    raise jf.BadSample(jf.BAD_FIELD, f"answer index {index!r} is not an integer") from None
  if not 0 <= i < min(num_options, len(jf.LETTERS)):
    raise jf.BadSample(jf.ANSWER_NOT_IN_OPTIONS, f"answer index {i} is not among the {num_options} options")
  return jf.LETTERS[i]


def keep_fields(row: dict, fields) -> dict:
  """{field: value} for the `fields` that `row` has (not None or empty)."""
  return {k: row[k] for k in fields if row.get(k) not in (None, "")}
