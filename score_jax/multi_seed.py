"""Several training seeds of one experiment, reported as mean ± std per method, ratio and held-out set.

    python benchmarks/seeds.py --config=experiments/curriculum.py --seeds=0,1,2 --out=workdirs/seeds

Each seed trains in `<out>/seed_<s>` through the ordinary `train` path (so each run resumes, and a
finished one is reused as is) and evaluates there; `aggregate` combines the runs' `eval.json` files.
"""
from __future__ import annotations

import json
import os

import numpy as np


def seed_workdir(out: str, seed: int) -> str:
  return os.path.join(out, f"seed_{seed}")


def read_eval(workdir: str) -> dict:
  """{set: {"method@ratio": accuracy, ...}} of a finished run (eval.json written by train)."""
  path = os.path.join(workdir, "eval.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: the run in {workdir} has not finished its evaluation.")
  with open(path) as f:
    return json.load(f)


def aggregate(runs: list[dict]) -> dict:
  """{set: {"method@ratio": (mean, std, n)}} over runs (std with ddof=0; n = runs holding the key);
  adaptive rows also get "<method>@kept" from each run's mean retention."""
  out: dict = {}
  for run in runs:
    for name, res in run.items():
      acc = out.setdefault(name, {})
      for key, v in res.items():
        if isinstance(v, float):
          acc.setdefault(key, []).append(v)
      for m, r in res.get("retention", {}).items():
        acc.setdefault(f"{m}@kept", []).append(r["mean"])
  return {name: {k: (float(np.mean(v)), float(np.std(v)), len(v)) for k, v in acc.items()}
          for name, acc in out.items()}


def rows_and_ratios(agg: dict) -> tuple[list[str], tuple[float, ...]]:
  """The methods (full tokens aside) and ratios that an aggregate holds "method@ratio" keys for, in first-seen and
  descending order."""
  methods, ratios = [], set()
  for table in agg.values():
    for key in table:
      method, _, ratio = key.rpartition("@")
      try:
        ratios.add(float(ratio))
      except ValueError:
        continue  # "@kept", "@adaptive"
      if method != "full" and method not in methods:
        methods.append(method)
  return methods, tuple(sorted(ratios, reverse=True))


def format_aggregate(agg: dict, ratios, methods) -> str:
  """Markdown per held-out set: mean ± std of accuracy over seeds, and % of the full-token mean."""
  cols = [r for r in ratios if r < 1.0]
  lines = []
  for name, table in agg.items():
    full = table.get("full@1.0")
    n = full[2] if full else 0
    lines += [f"### {name} ({n} seeds)\n",
              f"Full-token accuracy: {full[0]:.3f} ± {full[1]:.3f}\n" if full else ""]
    if cols:
      lines += ["| method | " + " | ".join(f"{r:.0%} kept" for r in cols) + " |", "|---|" + "---|" * len(cols)]
    for m in methods if cols else ():
      cells = []
      for r in cols:
        v = table.get(f"{m}@{r}")
        cells.append("-" if v is None else f"{v[0]:.3f} ± {v[1]:.3f}" + (f" ({v[0] / full[0]:.1%})" if full else ""))
      lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for key in [k for k in table if k.endswith("@adaptive")]:
      m = key[: -len("@adaptive")]
      acc, kept = table[key], table.get(f"{m}@kept", (0.0, 0.0, 0))
      lines.append(f"\n{m}: {acc[0]:.3f} ± {acc[1]:.3f}" + (f" ({acc[0] / full[0]:.1%})" if full else "")
                   + f" at a mean retention of {kept[0]:.1%} ± {kept[1]:.1%}")
    lines.append("")
  return "\n".join(lines)


def category_runs(runs: list[dict], field: str, pools: dict[str, tuple[str, ...]] | None = None) -> dict:
  """{set: {"method@ratio": {category: (mean, std, n)}}} over runs, from each run's `by_category` table of
  `field` (e.g. "question_type"); `pools` adds named groups of categories, each run's accuracy over a group
  weighted by its categories' sample counts. ValueError when no run has such a table, or a pooled category
  is missing."""
  pools = pools or {}
  out: dict = {}
  for run in runs:
    for name, res in run.items():
      tables = [t for t in res.get("by_category", []) if t.get("field") == field]
      for table in tables:
        n = table["n"]
        for key, acc in table["accuracy"].items():
          cell = out.setdefault(name, {}).setdefault(key, {})
          for cat, v in acc.items():
            cell.setdefault(cat, []).append(v)
          for pool, cats in pools.items():
            missing = [c for c in cats if c not in acc]
            if missing:
              raise ValueError(f"pool {pool!r}: categories {missing} are not in the {field!r} table of {name!r}.")
            total = sum(n[c] for c in cats)
            cell.setdefault(pool, []).append(sum(acc[c] * n[c] for c in cats) / total)
  if not out:
    raise ValueError(f"no run holds accuracy by {field!r} (by_category in eval.json).")
  return {name: {key: {cat: (float(np.mean(v)), float(np.std(v)), len(v)) for cat, v in cells.items()}
                 for key, cells in table.items()} for name, table in out.items()}


def format_categories(agg: dict, field: str) -> str:
  """Markdown per held-out set: one row per "method@ratio", one column per category or pool, mean ± std."""
  lines = []
  for name, table in agg.items():
    cats = list(dict.fromkeys(c for cells in table.values() for c in cells))
    seeds = max(v[2] for cells in table.values() for v in cells.values())
    lines += [f"### {name}: accuracy by {field} ({seeds} seeds)\n",
              "| method | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
    for key, cells in table.items():
      lines.append(f"| {key} | " + " | ".join(
          f"{cells[c][0]:.3f} ± {cells[c][1]:.3f}" if c in cells else "-" for c in cats) + " |")
    lines.append("")
  return "\n".join(lines)
