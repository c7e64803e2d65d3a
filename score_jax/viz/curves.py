"""Accuracy versus retention for several methods, mean ± std over runs (seeds) as error bars.

Runs are `eval.json` files (written by `score_jax.train` and `score_jax.eval`): pass the files, the
folders holding them, or a `benchmarks/seeds.py` output folder (its `seed_*/eval.json`); they are
combined with `score_jax.multi_seed.aggregate` ({set: {"method@ratio": (mean, std, n)}}).
"""
from __future__ import annotations

import glob
import json
import os

import numpy as np

from score_jax import multi_seed

ADAPTIVE, KEPT = "adaptive", "kept"  # the "ratio" of an adaptive row's accuracy and mean retention


def eval_files(paths) -> list[str]:
  """The eval.json files named by `paths` (files, run folders, or seeds folders with seed_*/eval.json)."""
  out = []
  for p in [paths] if isinstance(paths, str) else paths:
    p = os.path.expanduser(p)
    if os.path.isfile(p):
      out.append(p)
    elif os.path.isfile(os.path.join(p, "eval.json")):
      out.append(os.path.join(p, "eval.json"))
    elif os.path.isdir(p) and glob.glob(os.path.join(p, "seed_*", "eval.json")):
      out += sorted(glob.glob(os.path.join(p, "seed_*", "eval.json")))
    else:
      raise FileNotFoundError(f"{p}: no eval.json there (expected an eval.json file, a run folder holding one, "
                              "or a benchmarks/seeds.py output folder with seed_*/eval.json).")
  return out


def load_runs(paths) -> list[dict]:
  """One {set: {"method@ratio": accuracy, ...}} per eval.json of `paths` (see `eval_files`)."""
  runs = []
  for path in eval_files(paths):
    with open(path) as f:
      try:
        runs.append(json.load(f))
      except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}).") from e
  return runs


def curve_points(table: dict) -> dict:
  """{method: {ratio (float) | "adaptive" | "kept": (mean, std, n)}} from one set's aggregated table."""
  out: dict = {}
  for key, value in table.items():
    method, sep, ratio = key.rpartition("@")
    if not sep:
      continue
    try:
      r = float(ratio)
    except ValueError:
      if ratio not in (ADAPTIVE, KEPT):
        continue
      r = ratio
    out.setdefault(method, {})[r] = tuple(value)
  return out


def accuracy_curve_figure(runs: list[dict], held_out_set: str | None = None, methods=None, title: str | None = None):
  """Accuracy (mean ± std over `runs`) versus % of visual tokens kept, one line per method, adaptive
  methods as a point with the spread of their retention, all tokens as a line with its band.

  `held_out_set`: which set of the runs' eval.json (default: the first); `methods`: which to draw (default:
  every method with a ratio below 1, in the order of the first run)."""
  import matplotlib.pyplot as plt
  if not runs:
    raise ValueError("accuracy_curve_figure needs at least one run's eval.json.")
  agg = multi_seed.aggregate(runs)
  name = held_out_set or next(iter(agg))
  if name not in agg:
    raise ValueError(f"No held-out set {name!r} in the runs; they have {sorted(agg)}.")
  points = curve_points(agg[name])
  full = points.pop("full", {}).get(1.0)
  fixed = [m for m, p in points.items() if any(isinstance(r, float) and r < 1.0 for r in p)]
  adaptive = [m for m, p in points.items() if ADAPTIVE in p]
  wanted = list(methods) if methods else fixed + [m for m in adaptive if m not in fixed]
  unknown = [m for m in wanted if m not in points]
  if unknown:
    raise ValueError(f"No results for {unknown} in set {name!r}; the runs have {sorted(points)}.")
  n_runs = max((v[2] for p in points.values() for v in p.values()), default=0)
  fig, ax = plt.subplots(figsize=(6, 4))
  shown = sorted({r for m in wanted for r in points[m] if isinstance(r, float) and r < 1.0})
  for j, m in enumerate(wanted):
    p = points[m]
    ratios = sorted(r for r in p if isinstance(r, float) and r < 1.0)
    if ratios:
      ax.errorbar([100 * r for r in ratios], [p[r][0] for r in ratios], yerr=[p[r][1] for r in ratios],
                  marker="o", capsize=3, color=f"C{j}", label=m)
    if ADAPTIVE in p:
      kept = p.get(KEPT, (np.nan, 0.0, 0))
      ax.errorbar([100 * kept[0]], [p[ADAPTIVE][0]], xerr=[100 * kept[1]], yerr=[p[ADAPTIVE][1]], fmt="s",
                  capsize=3, color=f"C{j}", label=m if not ratios else None)
  if full is not None:
    ax.axhline(full[0], color="k", label="all tokens")
    if full[1] > 0:
      ax.axhspan(full[0] - full[1], full[0] + full[1], color="k", alpha=0.1)
  if shown:
    ax.set_xticks([100 * r for r in shown])
  ax.set_xlabel("visual tokens kept (%)")
  ax.set_ylabel("accuracy")
  runs_text = f"mean ± std over {n_runs} runs" if n_runs > 1 else "1 run"
  ax.set_title(title or f"{name}: {runs_text}", fontsize=10)
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig

