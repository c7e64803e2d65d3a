"""Accuracy per benchmark category, per method and retention ratio, as lmms-eval breaks its scores down.

VideoMME by duration, domain and task type; MLVU by task type (with MLVU's reported score, the mean
over task types); LongVideoBench by duration group and question category; NExT-QA by question type
(`score_jax.data.benchmark_tasks.REPORT_FIELDS`). Inputs: each evaluated sample's score by id
(`evaluate_methods` records results["_per_sample"] {(method, ratio): {id: score}} when its batches
carry ids: 1/0, averaged over random seeds) and each sample's `task` and category fields, read from
the eval JSONL file, or carried by the batches themselves (the generated world: task "world", by
question type; `evaluate_methods` records them as results["_categories"]). Samples without a known
`task` (a plain JSONL set) add nothing, so those reports are unchanged.
"""
from __future__ import annotations

import json
import os

from score_jax.data import benchmark_tasks as bt

ALL = "all"            # the column of every sample of the task
MACRO = "mean of categories"  # MLVU's reported score (M-Avg): the unweighted mean of its task-type accuracies
_ORDER = {"duration": ("short", "medium", "long")}  # natural orders; other categories sort by name
WORLD_TASK = "world"  # the generated world's held-out sets, broken down by question type
REPORT_FIELDS = {**bt.REPORT_FIELDS, WORLD_TASK: ("question_type",)}


def read_categories(path: str) -> dict[str, dict]:
  """{sample id: {"task": task, field: value}} for the lines of a JSONL file whose `task` is a known
  benchmark (ids as `score_jax.data.jsonl_format` assigns them); other lines are ignored (the reader
  that built the eval set reported them)."""
  out = {}
  with open(os.path.expanduser(path), "rb") as f:
    for lineno, raw in enumerate(f, 1):
      try:
        rec = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
      except (UnicodeDecodeError, json.JSONDecodeError):
        continue
      if not isinstance(rec, dict) or rec.get("task") not in bt.REPORT_FIELDS:
        continue
      task = rec["task"]
      out[str(rec.get("id", f"line{lineno}"))] = {"task": task, **{
          k: str(rec[k]) for k in bt.REPORT_FIELDS[task] if rec.get(k) not in (None, "")}}
  return out


def _sorted_categories(field: str, values) -> list[str]:
  order = _ORDER.get(field, ())
  return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), v))


def breakdown(per_sample: dict, categories: dict[str, dict]) -> list[dict]:
  """One group per (task, report field) present among the evaluated samples:
  {"task", "field", "n" {category: samples} (with ALL), "accuracy" {(method, ratio): {category: acc}}
  (with ALL, and MACRO for MLVU's task type)}."""
  evaluated = {i for scores in per_sample.values() for i in scores}
  groups = []
  for task in REPORT_FIELDS:
    ids = sorted(i for i in evaluated if categories.get(i, {}).get("task") == task)
    for field in REPORT_FIELDS[task] if ids else ():
      members = {}
      for i in ids:
        if field in categories[i]:
          members.setdefault(categories[i][field], []).append(i)
      if not members:
        continue
      cats = _sorted_categories(field, members)
      acc = {}
      for key, scores in per_sample.items():
        row = {c: sum(scores[i] for i in members[c]) / len(members[c]) for c in cats if all(
            i in scores for i in members[c])}
        if len(row) < len(cats):
          continue  # a method not run on every sample of the group
        row[ALL] = sum(scores[i] for i in ids) / len(ids)
        if bt.MACRO_AVERAGED.get(task) == field:
          row[MACRO] = sum(row[c] for c in cats) / len(cats)
        acc[key] = row
      n = {ALL: len(ids), **{c: len(members[c]) for c in cats}}
      groups.append({"task": task, "field": field, "categories": cats, "n": n, "accuracy": acc,
                     "macro": bt.MACRO_AVERAGED.get(task) == field})
  return groups


def add_breakdown(results: dict, categories: dict[str, dict]) -> dict:
  """Adds results["_by_category"] (the groups of `breakdown`) when any evaluated sample has categories."""
  groups = breakdown(results.get("_per_sample", {}), categories) if categories else []
  if groups:
    results["_by_category"] = groups
  return results


def _columns(group: dict) -> list[str]:
  return [ALL] + group["categories"] + ([MACRO] if group["macro"] else [])


def _kept(ratio) -> str:
  return f"{ratio:.0%}" if isinstance(ratio, float) else str(ratio)


def row_order(group: dict, methods=()) -> list[tuple]:
  """(method, ratio) rows: full, then `methods` in order (each ratio), then any others as recorded."""
  keys = list(group["accuracy"])
  rank = {m: j for j, m in enumerate(["full", *methods])}
  return sorted(keys, key=lambda k: (rank.get(k[0], len(rank)), -k[1] if isinstance(k[1], float) else 2))


def format_breakdown(groups: list[dict], methods=()) -> str:
  """Markdown: one table per (task, field); rows (method, kept), columns the categories (n each)."""
  parts = []
  for g in groups:
    cols = _columns(g)
    note = (f"; `{MACRO}` is the unweighted mean over {g['field']}, the score lmms-eval reports for "
            f"{g['task']} (M-Avg)" if g["macro"] else "")
    head = [f"{c} (n={g['n'][c]})" if c in g["n"] else c for c in cols]
    lines = [f"\n### {g['task']}: accuracy by {g['field']}{note}\n",
             "| method | kept | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(cols)]
    for key in row_order(g, methods):
      row = g["accuracy"][key]
      lines.append(f"| {key[0]} | {_kept(key[1])} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    parts.append("\n".join(lines))
  return "\n".join(parts)


def breakdown_json(groups: list[dict]) -> list[dict]:
  """The groups with "method@ratio" keys (eval.json)."""
  return [{"task": g["task"], "field": g["field"], "n": g["n"],
           "accuracy": {f"{m}@{r}": dict(row) for (m, r), row in g["accuracy"].items()}} for g in groups]


def csv_rows(groups: list[dict], full_key=("full", 1.0)) -> list[tuple]:
  """(method, ratio, task, field, category, accuracy, accuracy relative to full in the same category)."""
  out = []
  for g in groups:
    full = g["accuracy"].get(full_key, {})
    for (m, r), row in g["accuracy"].items():
      for c in _columns(g):
        rel = row[c] / full[c] if full.get(c) else None
        out.append((m, r, g["task"], g["field"], c, row[c], rel))
  return out
