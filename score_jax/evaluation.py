"""Accuracy of the frozen LLM on held-out data when only the tokens a method keeps are given.

Methods, all compared on the same batches and token budgets k = budget(N, ratio):
- learned policies, passed as `select(features, k) -> kept indices [B, k]` functions (or returning a
  `Compressed`; `features`: {"visual" [B, T, P, d], "question" [B, L, d], "question_mask" [B, L]});
- every method registered in `score_jax.compress.baselines` ("random" averaged over seeds): selectors, and
  compressors that make new tokens (pooled: "uniform_pool"; merged: "visionzip", "fastvid").
Every method's output becomes what the LLM sees, a `score_jax.compress.compressed.Compressed` (tokens,
position ids, validity); a selection is the gathered kept tokens at their own positions, so selectors give
the same answers as when prefill gathered their indices itself.
Retention 1.0 is the uncompressed model ("full"). Selection latency (the method's own scoring and
choosing or merging, median seconds per batch of the compiled call, compilation excluded) is reported apart
from the prefill latency at each budget, which every method shares.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import time
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from score_jax import category_breakdown
from score_jax.compress import compressed
from score_jax.compress.baselines import get_compressor
from score_jax.compress.selection import budget
from score_jax.methods.keep_policy import as_keep_policy
from score_jax.models import answer_reading, generate, prefill

ADAPTIVE = " (adaptive)"   # suffix of an adaptive policy's row: its own budget per video
ADAPTIVE_KEY = "adaptive"  # the "ratio" of that row's result: results[(name + ADAPTIVE, ADAPTIVE_KEY)]


TEXT_KEYS = ("prefix", "suffix", "suffix_len", "option_ids", "num_options")  # the prompt side of a batch


def text_inputs(batch: dict, llm=None) -> dict:
  """The entries of `TEXT_KEYS` a model batch has ("option_ids" only in the "option_word" format,
  "num_options" only for datasets whose samples have their own option counts); with `llm`, plus what
  its answer reading needs (`answer_reading.reading_inputs`)."""
  out = {k: batch[k] for k in TEXT_KEYS if k in batch}
  if llm is not None:
    out.update(answer_reading.reading_inputs(reading_of(llm).reading, batch, llm.prompts.tokenizer,
                                             llm.prompts.answer_format, llm.num_options))
  return out


def reading_of(llm) -> answer_reading.ReadingSettings:
  """The LLM's configured answer reading (`config.model.answer_reading`), "logits" if it has none."""
  return getattr(llm, "reading", None) or answer_reading.ReadingSettings()


def _arrays(text: dict) -> dict:
  return {k: v for k, v in text.items() if isinstance(v, (np.ndarray, jax.Array))}


def answer_fn(llm, reading: str | None = None):
  """`answer(params, visual [B, N, d], keep [B, k], text, valid=None, position_mode="original")
  -> predicted option [B]` (`valid` [B, k] masks padded slots of a variable-size keep set; or a
  `Compressed` video as `visual` with keep None: what a compressor hands the LLM), read as
  `reading` says (default: the LLM's configured one, see `score_jax.models.answer_reading`); `text`
  is `text_inputs(batch, llm)`. A generated answer that names no option predicts -1."""
  settings = reading_of(llm)
  reading = reading or settings.reading
  if reading not in answer_reading.READINGS:
    raise ValueError(f"answer reading {reading!r}; expected one of {answer_reading.READINGS}.")
  if reading == "generate":
    return _generate_answer_fn(llm, settings.max_new_tokens)

  @functools.partial(jax.jit, static_argnames=("position_mode",))
  def pick(params, visual, keep, batch, valid=None, position_mode="original"):
    text = (batch["prefix"], batch["suffix"], batch["suffix_len"])
    if reading == "option_likelihood":
      inputs = prefill.assemble_inputs(llm.module, params, visual, keep, *text, valid, position_mode)
      scores = answer_reading.option_loglikelihoods(llm.module, params, inputs, batch["continuation_ids"],
                                                    batch["continuation_len"], batch.get("num_options"))
    else:
      logits = prefill.prefill_logits(llm.module, params, visual, keep, *text, keep_valid=valid,
                                      position_mode=position_mode)
      scores = prefill.option_logprobs(logits, prefill.choice_ids(batch, llm.option_ids), batch.get("num_options"))
    return jnp.argmax(scores, -1)

  def answer(params, visual, keep, text, valid=None, position_mode="original"):
    if reading == "option_likelihood" and "continuation_ids" not in text:
      raise ValueError("The 'option_likelihood' answer reading needs text_inputs(batch, llm) of an LLM read that "
                       "way (the options' continuation ids).")
    return pick(params, visual, keep, _arrays(text), valid, position_mode=position_mode)
  return answer


def _generate_answer_fn(llm, max_new_tokens: int):
  """The "generate" reading: greedy decoding (compiled once per keep size and length), then each sample's
  answer parser (`answer_reading.parse_generated`)."""
  gen = generate.jit_generate(llm.module)
  tok = llm.prompts.tokenizer
  stops, pad = answer_reading.stop_token_ids(tok), answer_reading.pad_token_id(tok)

  def answer(params, visual, keep, text, valid=None, position_mode="original"):
    if "options" not in text:
      raise ValueError("The 'generate' answer reading needs text_inputs(batch, llm) (option texts, tasks).")
    tokens = gen(params, visual, keep, text["prefix"], text["suffix"], text["suffix_len"], keep_valid=valid,
                 position_mode=position_mode, max_new_tokens=max_new_tokens, eos_ids=stops, pad_id=pad)
    texts = answer_reading.generated_texts(tok, np.asarray(tokens), stops)
    tasks = text.get("task") or [None] * len(texts)
    picks = [answer_reading.parse_generated(t, len(o), task or None, o, llm.prompts.answer_format)
             for t, o, task in zip(texts, text["options"], tasks)]
    return np.asarray([-1 if p is None else p for p in picks], np.int32)
  return answer


def _jitted_compressor(name: str, k: int, llm):
  """The registered method `name` at budget k as a compiled `f(visual, key, arrays, llm_params) ->
  Compressed` (a selector gathers what it keeps), so latency excludes Python dispatch."""
  compress = get_compressor(name)

  def run(visual, key, arrays, llm_params):
    return compress(visual, k, key=key, extras=dict(arrays, llm_module=llm.module, llm_params=llm_params))
  return jax.jit(run)


class _Timer:
  """Wall time of compiled calls: the first call per name is a warm-up (compilation), not timed."""

  def __init__(self):
    self.warm: set = set()

  def __call__(self, name, fn, *args):
    if name not in self.warm:
      jax.block_until_ready(fn(*args))
      self.warm.add(name)
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def evaluate_methods(llm, batches: Callable[[], Iterable[dict]], ratios, baselines, policies: dict,
                     random_seeds: int = 3, seed: int = 0) -> dict:
  """{(method, ratio): accuracy} plus "_latency" {method: s/batch}, "_prefill" {ratio: s/batch}, "_samples".

  `batches()` yields dicts with "frames" (or precomputed "visual"), "prefix", "suffix", "suffix_len",
  "answer" and whatever selectors read from `extras` (e.g. "oracle_scores"). Batches with sample ids
  ("id": JSONL sets, the generated world) also give "_per_sample" {(method, ratio): {id: score}} (1/0,
  averaged over random seeds), which `score_jax.category_breakdown` groups by benchmark category;
  batches that carry each sample's "categories" ({"task", field: value}) also give "_categories"
  {id: categories}. The "option_likelihood" and "generate" readings (`llm.reading`, used for every
  method and ratio) also need the option texts ("options", and "task" where known:
  `answer_reading.sample_texts`); "_prefill" then times the whole reading (for "generate": prefill,
  decoding and parsing).
  """
  answer = answer_fn(llm)
  compiled: dict = {}
  _timed = _Timer()
  hits: dict = {}
  retention: dict = {}
  latency: dict = {}
  policies = {name: as_keep_policy(p) for name, p in policies.items()}
  prefill_s: dict = {}
  per_sample: dict = {}
  categories: dict = {}
  total = 0
  for i, b in enumerate(batches()):
    visual = b["visual"] if "visual" in b else llm.encode(llm.params, b["frames"])
    bsz, t, p, d = visual.shape
    n = t * p
    flat = visual.reshape(bsz, n, d)
    text = text_inputs(b, llm)
    features = {"visual": visual, **llm.question_features(b["suffix"], b["suffix_len"])}
    arrays = {k: v for k, v in dict(b, **features).items()
              if isinstance(v, (np.ndarray, jax.Array)) and np.asarray(v).dtype.kind in "biuf"}
    ans = np.asarray(b["answer"])
    ids = [str(x) for x in b["id"]] if "id" in b else None
    if ids is not None and "categories" in b:
      categories.update(zip(ids, b["categories"]))
    total += bsz

    def run(ratio, video: compressed.Compressed, position_mode="original", fixed=True):
      """Per-sample correctness of the LLM shown `video`; `fixed` budgets time the prefill at `ratio`."""
      pred, dt = _timed(("prefill", ratio, video.tokens.shape, video.span, fixed, position_mode),
                        functools.partial(answer, position_mode=position_mode), llm.params, video, None, text)
      if fixed:
        prefill_s.setdefault(ratio, []).append(dt)
      return np.asarray(pred) == ans  # per sample

    def add(name, ratio, correct):
      hits[(name, ratio)] = hits.get((name, ratio), 0) + float(np.sum(correct))
      if ids is not None:
        scores = per_sample.setdefault((name, ratio), {})
        for sid, c in zip(ids, np.asarray(correct, np.float64).tolist()):
          scores[sid] = scores.get(sid, 0.0) + c

    for name, pol in policies.items():
      if pol.adaptive is not None:
        out, dt = _timed((name, "adaptive"), pol.adaptive, features, n)
        latency.setdefault(name + ADAPTIVE, []).append(dt)
        video = compressed.as_compressed(out, flat)
        add(name + ADAPTIVE, ADAPTIVE_KEY, run(ADAPTIVE_KEY, video, pol.position_mode, fixed=False))
        retention.setdefault(name + ADAPTIVE, []).extend((np.asarray(video.valid).sum(-1) / n).tolist())
    for ratio in ratios:
      if ratio >= 1.0:
        add("full", 1.0, run(1.0, compressed.full(flat)))
        continue
      k = budget(n, ratio)
      for name, pol in policies.items():
        out, dt = _timed((name, k), pol.select, features, k)
        latency.setdefault(name, []).append(dt)
        add(name, ratio, run(ratio, compressed.as_compressed(out, flat), pol.position_mode))
      for name in baselines:
        if (name, k) not in compiled:
          compiled[(name, k)] = _jitted_compressor(name, k, llm)
        seeds = random_seeds if name.startswith("random") else 1
        for s in range(seeds):
          key = jax.random.fold_in(jax.random.key(seed + s), i)
          video, dt = _timed((name, k), compiled[(name, k)], visual, key, arrays, llm.params)
          latency.setdefault(name, []).append(dt)
          add(name, ratio, run(ratio, video) / seeds)
  results = {key: v / max(total, 1) for key, v in hits.items()}
  results["_latency"] = {m: float(np.median(v)) for m, v in latency.items()}
  results["_prefill"] = {r: float(np.median(v)) for r, v in prefill_s.items()}
  results["_samples"] = total
  results["_retention"] = {m: (float(np.mean(v)), float(np.std(v))) for m, v in retention.items()}
  if per_sample:
    results["_per_sample"] = per_sample
  if categories:
    results["_categories"] = categories
  return results


def format_table(results: dict, ratios, methods) -> str:
  """Markdown: one row per method, one column per retention ratio (accuracy and % of full), latency."""
  full = results.get(("full", 1.0))
  cols = [r for r in ratios if r < 1.0]
  lat = results.get("_latency", {})
  lines = ["| method | " + " | ".join(f"{r:.0%} kept" for r in cols) + " | selection ms/batch |",
           "|---|" + "---|" * (len(cols) + 1)]
  if full is not None:
    lines.insert(0, f"Full-token accuracy: {full:.3f} on {results['_samples']} held-out samples\n")
  for m in methods:
    cells = [_cell(results, m, r) for r in cols]
    ms = f"{1e3 * lat[m]:.1f}" if m in lat else "-"
    lines.append(f"| {m} | " + " | ".join(cells) + f" | {ms} |")
  adaptive = results.get("_retention", {})
  if adaptive:
    lines += ["\nAdaptive budgets (each video keeps the policy's own number of tokens, under the training cap):",
              "| method | accuracy | kept (mean ± std over samples) |", "|---|---|---|"]
    for m, (mean, std) in adaptive.items():
      lines.append(f"| {m} | {_cell(results, m, ADAPTIVE_KEY)} | {mean:.1%} ± {std:.1%} |")
  pre = results.get("_prefill", {})
  if pre:
    lines.append("\nPrefill ms/batch: " + ", ".join(f"{r:.0%}: {1e3 * v:.1f}" for r, v in sorted(pre.items())))
  return "\n".join(lines)


def results_to_json(results: dict) -> dict:
  out = {f"{m}@{r}": v for (m, r), v in ((k, v) for k, v in results.items() if isinstance(k, tuple))}
  out["latency_s"] = results.get("_latency", {})
  out["prefill_s"] = {str(r): v for r, v in results.get("_prefill", {}).items()}
  out["samples"] = results.get("_samples", 0)
  out["retention"] = {m: {"mean": v[0], "std": v[1]} for m, v in results.get("_retention", {}).items()}
  if "_by_category" in results:
    out["by_category"] = category_breakdown.breakdown_json(results["_by_category"])
  return out


REPORT_FILES = ("eval.md", "eval.csv", "eval.json", "eval.png")


def _cell(results: dict, m: str, r) -> str:
  full, acc = results.get(("full", 1.0)), results.get((m, r))
  return "-" if acc is None else f"{acc:.3f}" + (f" ({acc / full:.0%})" if full else "")


def format_side_by_side(results_by_set: dict, ratios, methods) -> str:
  """One row per method, a column per (held-out set, ratio); adaptive rows give accuracy @ mean kept."""
  cols = [r for r in ratios if r < 1.0]
  sets = list(results_by_set)
  head = [f"{s} {r:.0%}" for s in sets for r in cols]
  lines = ["| method | " + " | ".join(f"{s} full" for s in sets) + " | " + " | ".join(head) + " |",
           "|---|" + "---|" * (len(sets) + len(head))]
  fulls = [_cell(results_by_set[s], "full", 1.0) for s in sets]
  for m in methods:
    lines.append(f"| {m} | " + " | ".join("" for _ in sets) + " | "
                 + " | ".join(_cell(results_by_set[s], m, r) for s in sets for r in cols) + " |")
  lines.insert(2, "| full | " + " | ".join(fulls) + " | " + " | ".join("" for _ in head) + " |")
  adaptive = list(results_by_set[sets[0]].get("_retention", {}))
  if adaptive:
    lines += ["", "| adaptive policy | " + " | ".join(f"{s}: accuracy at kept (mean ± std)" for s in sets) + " |",
              "|---|" + "---|" * len(sets)]
    for m in adaptive:
      cells = []
      for s in sets:
        mean, std = results_by_set[s]["_retention"][m]
        cells.append(_cell(results_by_set[s], m, ADAPTIVE_KEY) + f" at {mean:.1%} ± {std:.1%}")
      lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_report(results_by_set: dict, ratios, methods) -> str:
  """The table of one held-out set, or the sets side by side followed by each set's own table; then the
  accuracy by benchmark category of the sets that have one (`score_jax.category_breakdown`)."""
  by_category = "".join(
      (f"\n\n## {name}: accuracy by category\n" if len(results_by_set) > 1 else "\n\n## Accuracy by category\n")
      + category_breakdown.format_breakdown(r["_by_category"], methods)
      for name, r in results_by_set.items() if r.get("_by_category"))
  if len(results_by_set) == 1:
    return format_table(next(iter(results_by_set.values())), ratios, methods) + by_category
  parts = ["Held-out sets side by side (accuracy, and % of that set's full-token accuracy):\n",
           format_side_by_side(results_by_set, ratios, methods)]
  for name, results in results_by_set.items():
    parts += [f"\n### {name}\n", format_table(results, ratios, methods)]
  return "\n".join(parts) + by_category


def write_reports(results_by_set: dict, ratios, methods, out_dir: str, plot: bool = True) -> list[str]:
  """eval.md, eval.csv (set, method, ratio, accuracy, relative, selection_s), eval.json ({set: ...})
  and eval.png, for results {held-out set name: evaluate_methods(...)}. Sets with a category breakdown
  add csv columns task, category_field, category (empty on the overall rows) and a row per category."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, f"eval.{ext}") for ext in ("md", "csv", "json")]
  with open(paths[0], "w") as f:
    f.write(format_report(results_by_set, ratios, methods) + "\n")
  pad = ["", "", ""] if any(r.get("_by_category") for r in results_by_set.values()) else []
  with open(paths[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["set", "method", "retention", "accuracy", "relative_to_full", "selection_s_per_batch"]
               + (["task", "category_field", "category"] if pad else []))
    for name, results in results_by_set.items():
      full = results.get(("full", 1.0))
      lat = results.get("_latency", {})
      if full is not None:
        w.writerow([name, "full", 1.0, f"{full:.4f}", "1.0000", ""] + pad)
      for m in methods:
        for r in ratios:
          if (m, r) in results:
            acc = results[(m, r)]
            w.writerow([name, m, r, f"{acc:.4f}", f"{acc / full:.4f}" if full else "", lat.get(m, "")] + pad)
      for m, (mean, _) in results.get("_retention", {}).items():
        acc = results[(m, ADAPTIVE_KEY)]
        w.writerow([name, m, f"{mean:.4f}", f"{acc:.4f}", f"{acc / full:.4f}" if full else "", lat.get(m, "")] + pad)
      retention = results.get("_retention", {})
      for m, r, task, field, cat, acc, rel in category_breakdown.csv_rows(results.get("_by_category", [])):
        kept = f"{retention[m][0]:.4f}" if r == ADAPTIVE_KEY and m in retention else r
        w.writerow([name, m, kept, f"{acc:.4f}", "" if rel is None else f"{rel:.4f}", "", task, field, cat])
  with open(paths[2], "w") as f:
    json.dump({name: results_to_json(r) for name, r in results_by_set.items()}, f, indent=2)
  if plot:
    paths.append(plot_accuracy(results_by_set, ratios, methods, os.path.join(out_dir, "eval.png")))
  return paths


def plot_accuracy(results_by_set: dict, ratios, methods, path: str) -> str:
  """Accuracy versus retention, one line per method (dashed for every held-out set after the first),
  adaptive policies as points with the spread of their retention, full-token accuracy as a line."""
  from matplotlib.figure import Figure  # not pyplot: no global backend switch (notebooks keep theirs)
  cols = sorted(r for r in ratios if r < 1.0)
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  for i, (name, results) in enumerate(results_by_set.items()):
    style = "-" if i == 0 else "--"
    suffix = f" [{name}]" if len(results_by_set) > 1 else ""
    for j, m in enumerate(methods):
      ys = [results.get((m, r)) for r in cols]
      if any(y is not None for y in ys):
        ax.plot([100 * r for r in cols], [np.nan if y is None else y for y in ys], style, marker="o",
                color=f"C{j}", label=m + suffix)
    for m, (mean, std) in results.get("_retention", {}).items():
      ax.errorbar([100 * mean], [results[(m, ADAPTIVE_KEY)]], xerr=[100 * std], fmt="s", capsize=3, label=m + suffix)
    if ("full", 1.0) in results:
      ax.axhline(results[("full", 1.0)], color="k", linestyle=style, label="all tokens" + suffix)
  ax.set_xlabel("visual tokens kept (%)")
  ax.set_ylabel("accuracy")
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  return path
