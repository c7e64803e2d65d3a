"""Evaluate trained compression policies and training-free baselines on held-out data.

    python -m score_jax.eval --config=experiments/curriculum.py --checkpoint=workdirs/curriculum
    python -m score_jax.eval --config=experiments/curriculum.py --checkpoint=score=workdirs/curriculum \\
        --checkpoint=cacovid=workdirs/cacovid --methods=uniform_pool,random,residual --ratios=1,0.25,0.15,0.1

`--checkpoint` is a training workdir (its `config.json` rebuilds the policy; the newest checkpoint is
used) or `workdir/checkpoints/STEP`; `name=path` names the method in the table (default: the
config's `method`). The held-out data is the config's (`score_jax.train.heldout_batches`): the
generated world, or with `config.eval.source="jsonl"` (the llava_ov_* configs) `config.data.eval_file`,
read from its feature cache when that is current. Writes `eval.md`, `eval.csv`, `eval.json` and
`eval.png` (accuracy versus retention) to `--out` (default: a new folder `evals/<UTC time>` in the
first checkpoint's workdir, else in the config's workdir); a folder that already holds reports is
refused, so a training run's own `eval.*` are never replaced. A JSONL eval set whose records carry a
benchmark `task` (the converters in `score_jax.data.benchmark_layouts` write it) adds accuracy per
category to the reports (`score_jax.category_breakdown`: VideoMME duration, domain and task type, MLVU
task type and its mean over them, LongVideoBench duration group and question category, NExT-QA type). Ratios, methods and paths are checked
before the model loads. `--dump_prompts=FILE` instead writes each eval sample's exact prompt text and
ids to a new JSONL file and exits, reading only the checkpoint's config and tokenizer files
(`score_jax.protocol.dump_prompts`).
"""
from __future__ import annotations

import ast
import functools
import os
import sys
import time

from absl import app, flags, logging
import jax
from ml_collections import config_flags
import orbax.checkpoint as ocp

from score_jax import config_checks, evaluation, run_ledger
from score_jax.data import feature_cache
from score_jax.frozen_llm import load_frozen_llm
from score_jax.methods import METHODS, get_method
from score_jax.models import sharding as shd


def _define_flags() -> dict:
  """Command-line flags, defined only when this module runs as a program (imports stay side-effect free)."""
  return dict(
    config=config_flags.DEFINE_config_file("config", None, "Experiment config (model, data and eval settings)."),
    checkpoint=flags.DEFINE_multi_string("checkpoint", [], "[name=]workdir or workdir/checkpoints/STEP"),
    methods=flags.DEFINE_list("methods", None, "baselines to run (default: config.eval.methods minus 'policy')"),
    ratios=flags.DEFINE_list("ratios", None, "retention ratios (default: config.eval.ratios)"),
    out=flags.DEFINE_string("out", None, "output folder for eval.md/.csv/.json/.png"),
    dump_prompts=flags.DEFINE_string("dump_prompts", None, "write each eval sample's exact prompt to this new "
                                     "JSONL file and exit (score_jax/protocol/dump_prompts.py; no weights read)"),
  )



class CheckpointError(FileNotFoundError):
  """A checkpoint path that does not hold a trained policy."""


class EvalOutputError(FileExistsError):
  """An output folder that already holds reports."""


def split_checkpoint_arg(arg: str) -> tuple[str | None, str]:
  name, sep, path = arg.partition("=")
  return (name, path) if sep and not os.path.exists(arg) else (None, arg)


def resolve_checkpoint(path: str) -> tuple[str, str, int]:
  """(workdir, checkpoints folder, step) for a workdir or a workdir/checkpoints/STEP path."""
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise CheckpointError(f"Checkpoint path {path} does not exist.")
  base = os.path.basename(path.rstrip("/"))
  if base.isdigit() and os.path.basename(os.path.dirname(path)) == "checkpoints":
    ckpt_dir, step = os.path.dirname(path), int(base)
    return os.path.dirname(ckpt_dir), ckpt_dir, step
  ckpt_dir = os.path.join(path, "checkpoints")
  steps = sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(ckpt_dir) else []
  if not steps:
    raise CheckpointError(f"No checkpoints in {ckpt_dir} (expected a training workdir or "
                          "workdir/checkpoints/STEP).")
  return path, ckpt_dir, steps[-1]


# Inference-only settings of a trained policy that the eval command's own overrides replace (e.g.
# `--config.cacovid_eval.imp=0.25`); everything else comes from the training workdir. Each method module
# names its section and settings (`INFERENCE`).
INFERENCE_KEYS = tuple(f"{get_method({'method': m}).INFERENCE[0]}." for m in METHODS)


def inference_overrides(overrides: dict) -> dict:
  """The command-line config overrides ({"a.b": value}) that apply to trained policies at inference."""
  return {k: v for k, v in overrides.items() if any(k.startswith(p) for p in INFERENCE_KEYS)}


def parse_inference(args: list[str]) -> dict:
  """["cacovid_eval.imp=1.0"] -> {"cacovid_eval.imp": 1.0} (`benchmarks/compare.py --inference`); a key
  outside `INFERENCE_KEYS` or an argument without "=" is an error."""
  out = {}
  for arg in args:
    key, sep, value = arg.partition("=")
    if not sep or not inference_overrides({key: None}):
      raise ValueError(f"--inference={arg}: expected KEY=VALUE with KEY under {INFERENCE_KEYS}.")
    try:
      out[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      out[key] = value
  return out


def takes_inference(config, key: str) -> bool:
  """Whether the trained policy of run `config` takes the inference setting `key`: one its method reads
  (`INFERENCE` of the method module), whether or not the run recorded it (the method's default fills it)."""
  section, _, name = key.partition(".")
  own_section, names = get_method(config).INFERENCE
  return section == own_section and name in names


def unused_inference_keys(inference: dict, run_configs: list) -> list[str]:
  """Keys of `inference` that none of the trained policies takes (a typo, or no such policy)."""
  return [k for k in inference if not any(takes_inference(c, k) for c in run_configs)]


def load_policy(path: str, llm, overrides: dict | None = None):
  """(run config, select function) of a trained policy from a training workdir; `overrides` ({"a.b":
  value}, `INFERENCE_KEYS` only) replace the workdir's inference settings."""
  run_config, method, policy, params = load_policy_params(path, llm, overrides)
  return run_config, method.keep_fn(run_config, policy, params)


def load_policy_params(path: str, llm, overrides: dict | None = None):
  """(run config, method, policy module, trained params) of a training workdir (see `load_policy`)."""
  from score_jax import train as train_lib
  workdir, ckpt_dir, step = resolve_checkpoint(path)
  inference = inference_overrides(overrides or {})
  try:
    run_config = run_ledger.effective_config(workdir, inference)
  except run_ledger.WorkdirError as e:
    raise CheckpointError(str(e)) from None
  if inference:
    logging.info("Inference settings from the command line for %s: %s", workdir, inference)
  method = get_method(run_config)
  policy = method.make_policy(run_config)
  tx = train_lib.make_optimizer(run_config, max(step, 1))
  template = method.init_state(run_config, policy, tx, llm, jax.random.key(0))
  mngr = ocp.CheckpointManager(ckpt_dir)
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  except Exception as e:  # orbax raises several types for unreadable or mismatched checkpoints
    raise CheckpointError(f"Cannot restore step {step} from {ckpt_dir}: {e}") from e
  finally:
    mngr.close()
  logging.info("Loaded %s policy from %s (step %d)", run_config.method, ckpt_dir, step)
  return run_config, method, policy, restored["state"].params


def default_out(checkpoints: list[str], config) -> str:
  """A new folder of its own: <first checkpoint's workdir (else config.workdir)>/evals/<UTC time>."""
  base = resolve_checkpoint(split_checkpoint_arg(checkpoints[0])[1])[0] if checkpoints else config.workdir
  stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
  out, n = os.path.join(base, "evals", stamp), 1
  while os.path.exists(out):
    n += 1
    out = os.path.join(base, "evals", f"{stamp}-{n}")
  return out


def check_out(out: str) -> None:
  """Refuses an output folder that already holds eval reports (nothing is overwritten)."""
  present = [f for f in evaluation.REPORT_FILES if os.path.exists(os.path.join(out, f))]
  if present:
    raise EvalOutputError(f"{out} already holds {present}; pass another --out (nothing was overwritten).")


def run(config, checkpoints: list[str], methods=None, ratios=None, out: str | None = None,
        overrides: dict | None = None) -> dict:
  """Evaluates every named policy and baseline; writes the table files; returns the results.
  `overrides`: the command line's config overrides; their `INFERENCE_KEYS` apply to the trained policies."""
  from score_jax import train as train_lib
  source = config_checks.check_eval_config(config, with_lists=False)
  config_checks.check_model(config.model)
  config_checks.check_data_files(config, [], source)
  ratios = config_checks.check_ratios(ratios or config.eval.ratios, "--ratios" if ratios else "config.eval.ratios")
  baselines = config_checks.check_eval_methods(
      [m for m in (methods or config.eval.methods) if m != "policy"], source,
      "--methods" if methods else "config.eval.methods")
  for arg in checkpoints:
    resolve_checkpoint(split_checkpoint_arg(arg)[1])  # a wrong path fails before the model loads
  out = out or default_out(checkpoints, config)
  check_out(out)
  mesh = shd.make_mesh(tuple(config.model.mesh))
  llm = load_frozen_llm(config.model, mesh)
  policies = {}
  for arg in checkpoints:
    name, path = split_checkpoint_arg(arg)
    run_config, select = load_policy(path, llm, overrides)
    policies[name or run_config.method] = select
  results = train_lib.evaluate_and_report(config, llm, policies, baselines, ratios, out)
  print(f"Reports written to {out}")
  return results


def main(argv, flag_values: dict):
  del argv
  values = {name: holder.value for name, holder in flag_values.items()}
  if values["config"] is None:
    sys.exit("Pass --config=experiments/<name>.py")
  try:
    if values.get("dump_prompts"):
      from score_jax.protocol.dump_prompts import dump_prompts
      n = dump_prompts(values["config"], values["dump_prompts"])
      print(f"{n} prompts written to {values['dump_prompts']}")
      return
    from score_jax import compilation_cache
    compilation_cache.enable(values["config"])  # config.compilation_cache_dir ("" = off)
    run(values["config"], values["checkpoint"], values["methods"], values["ratios"], values["out"],
        config_flags.get_override_values(flags.FLAGS["config"]))
  except (CheckpointError, EvalOutputError, ValueError, feature_cache.CacheError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
