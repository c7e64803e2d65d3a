"""The comparison table: trained policies and every training-free compressor, accuracy at each retention
next to each method's selection latency (ms per video: the compressor alone, compiled, after warm-up).

    python benchmarks/compare.py --config=experiments/curriculum.py --samples=1024 \\
        --checkpoint=score=workdirs/curriculum --checkpoint=score_adaptive=workdirs/curriculum_adaptive \\
        --checkpoint=cacovid=workdirs/cacovid --out=workdirs/compare

`--checkpoint` as `score_jax.eval` ([name=]workdir; `--inference=cacovid_eval.imp=1.0` replaces an
inference setting of the trained policies that have it); `--methods` defaults to every registered baseline
(selectors and compressors, `score_jax.compress.baselines.method_names()`); `--ratios` to 1,0.25,0.15,0.1;
the held-out sets are the config's (`--sets` picks some). Latency is `evaluate_methods`' median seconds
per batch of the compiled call divided by the batch size (`config.eval.batch_size`); an adaptive policy's
row gives its accuracy at its own mean retention. Writes `compare.md` and the usual eval reports to `--out`.
"""
from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

from score_jax import config_checks, evaluation, run_ledger, train as train_lib
from score_jax import eval as eval_lib
from score_jax.compress.baselines import method_names
from score_jax.frozen_llm import load_frozen_llm
from score_jax.models import sharding as shd

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (model, data, eval settings)")
_CHECKPOINTS = flags.DEFINE_multi_string("checkpoint", [], "[name=]workdir of a trained policy")
_METHODS = flags.DEFINE_list("methods", None, "baselines (default: every registered one)")
_RATIOS = flags.DEFINE_list("ratios", ["1", "0.25", "0.15", "0.1"], "retention ratios (1 = full tokens)")
_SAMPLES = flags.DEFINE_integer("samples", None, "held-out samples per set (default: config.eval.samples)")
_SETS = flags.DEFINE_list("sets", None, "held-out sets of the generated world (default: config.eval.sets)")
_OUT = flags.DEFINE_string("out", None, "output folder (default: <config.workdir>/../compare)")
_INFERENCE = flags.DEFINE_multi_string("inference", [], "KEY=VALUE: an inference setting for the trained policies "
                                       "that have it (score_jax.eval.INFERENCE_KEYS), e.g. cacovid_eval.imp=1.0")


def latency_ms_per_video(results: dict, method: str, batch_size: int) -> float | None:
  lat = results.get("_latency", {}).get(method)
  return None if lat is None else 1e3 * lat / batch_size


def format_compare(results_by_set: dict, ratios, methods, batch_size: int) -> str:
  """Per held-out set: method | accuracy (% of full) at each ratio | selection ms/video."""
  cols = sorted((r for r in ratios if r < 1.0), reverse=True)
  parts = []
  for name, results in results_by_set.items():
    full = results.get(("full", 1.0))
    parts += [f"### {name}: {results['_samples']} held-out samples, full-token accuracy "
              + (f"{full:.3f}" if full is not None else "-") + "\n",
              "| method | " + " | ".join(f"{r:.0%} kept" for r in cols) + " | selection ms/video |",
              "|---|" + "---|" * (len(cols) + 1)]
    for m in methods:
      ms = latency_ms_per_video(results, m, batch_size)
      parts.append(f"| {m} | " + " | ".join(evaluation._cell(results, m, r) for r in cols)  # pylint: disable=protected-access
                   + f" | {'-' if ms is None else f'{ms:.3f}'} |")
    for m, (mean, std) in results.get("_retention", {}).items():
      ms = latency_ms_per_video(results, m, batch_size)
      cells = [evaluation._cell(results, m, evaluation.ADAPTIVE_KEY)] + ["-"] * (len(cols) - 1)  # pylint: disable=protected-access
      parts.append(f"| {m}, its own budget ({mean:.1%} ± {std:.1%} kept; first column) | " + " | ".join(cells)
                   + f" | {'-' if ms is None else f'{ms:.3f}'} |")
    parts.append("")
  return "\n".join(parts)


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("Pass --config=experiments/<name>.py")
  if _SAMPLES.value:
    config.eval.samples = _SAMPLES.value
  if _SETS.value:
    config.eval.sets = tuple(_SETS.value)
  source = config_checks.check_eval_config(config, with_lists=False)
  ratios = config_checks.check_ratios(_RATIOS.value, "--ratios")
  try:
    inference = eval_lib.parse_inference(_INFERENCE.value)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  baselines = config_checks.check_eval_methods(_METHODS.value or [m for m in method_names()
                                                                   if source == "world" or m != "oracle"],
                                               source, "--methods")
  run_configs = [run_ledger.effective_config(
      eval_lib.resolve_checkpoint(eval_lib.split_checkpoint_arg(arg)[1])[0]) for arg in _CHECKPOINTS.value]
  unused = eval_lib.unused_inference_keys(inference, run_configs)
  if unused:
    raise app.UsageError(f"--inference {unused}: none of the trained policies given has this setting.")
  out = _OUT.value or os.path.join(os.path.dirname(config.workdir.rstrip("/")) or ".", "compare")
  eval_lib.check_out(out)
  llm = load_frozen_llm(config.model, shd.make_mesh(tuple(config.model.mesh)))
  policies = {}
  for arg, own in zip(_CHECKPOINTS.value, run_configs):
    name, path = eval_lib.split_checkpoint_arg(arg)
    mine = {k: v for k, v in inference.items() if eval_lib.takes_inference(own, k)}
    run_config, select = eval_lib.load_policy(path, llm, mine)
    policies[name or run_config.method] = select
  results = train_lib.evaluate_and_report(config, llm, policies, baselines, ratios, out)
  table = format_compare(results, ratios, list(policies) + list(baselines),
                         min(config.eval.batch_size, config.eval.samples or config.eval.batch_size))
  print(table)
  with open(os.path.join(out, "compare.md"), "w") as f:
    f.write(table + "\n")
  print(f"Reports written to {out}")


if __name__ == "__main__":
  app.run(main)
