"""Train a token-compression policy against a frozen video LLM.

    python -m score_jax.train --config=experiments/curriculum.py [--config.x=y ...]

Resumes from the newest checkpoint in `config.workdir` (policy params, optimizer state, step and the
data iterators' positions; the RNG is derived from (seed, step)), writes TensorBoard metrics to
`workdir/tb`, and ends with a held-out evaluation table in `workdir/eval.md`. With several processes
(`--distributed`, launch/) each reads its own rows of every global batch (`score_jax.data.host_shard`: the
same global batches as one process) and saves and restores its own data positions.

Curriculum stages "pseudo" and "video" draw from the generated world; "jsonl" reads
`config.data.train_file` through its feature cache (`python -m score_jax.cache`) when that is
current, else decodes the videos; "images" trains on pseudo-videos of the image QA set
`config.data.image_file` (cached likewise, `score_jax.data.image_feature_cache`). `config.eval.source`
picks the held-out data: "world" (default) or "jsonl" (`config.data.eval_file`, cached likewise).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
import signal
import sys

from absl import app, flags, logging
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from ml_collections import config_flags

from score_jax import (cache, category_breakdown, checkpointing, config_checks, distributed, evaluation, interrupts,
                       run_ledger)
from score_jax.compress.policy import policy_param_count
from score_jax.data import feature_cache, host_shard, sample_log
from score_jax.data.image_pseudo_video import ImagePseudoVideoSource
from score_jax.world import heldout_sets
from score_jax.world.lossy_video import LossySettings
from score_jax.data.pipeline import Head, make_iterator
from score_jax.world.generator import WorldConfig
from score_jax.world.sources import WorldSource
from score_jax.embedded.batches import encode_grain_batch, encode_text
from score_jax.embedded.world_text import WORLD
from score_jax.frozen_llm import load_frozen_llm
from score_jax.models import answer_reading, prefill, sharding as shd
from score_jax.methods import get_method


def _define_flags() -> dict:
  """Command-line flags, defined only when this module runs as a program (imports stay side-effect free)."""
  return dict(
    config=config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config()).",
                                           lock_config=True),
    distributed=flags.DEFINE_bool("distributed", False, "start jax.distributed first (multi-host; see launch/)"),
    allow_config_change=flags.DEFINE_list(
        "allow_config_change", [], "config keys that may differ from the workdir's saved run on resume "
        "(recorded in workdir/history.jsonl); '*' allows any"),
  )


def stage_of(step: int, stages: list[tuple[str, int]]) -> int:
  end = 0
  for i, (_, steps) in enumerate(stages):
    end += steps
    if step < end:
      return i
  return len(stages) - 1


def make_optimizer(config, total_steps: int) -> optax.GradientTransformation:
  o = config.optim
  warmup = min(o.warmup_steps, max(total_steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, warmup, max(total_steps, warmup + 1),
                                                o.learning_rate * 0.1)
  return optax.chain(optax.clip_by_global_norm(o.grad_clip), optax.adamw(schedule, weight_decay=o.weight_decay))


def blind_keep_fn(llm):
  """Item filter for training data: keep the questions the frozen LLM gets wrong without the video."""
  from score_jax.data.blind_filter import blind_option_logprobs
  score = jax.jit(lambda params, t: blind_option_logprobs(llm.module, params, t["prefix"], t["suffix"],
                                                          t["suffix_len"], prefill.choice_ids(t, llm.option_ids)))

  def keep(item) -> bool:
    options = [str(o) for o in item["options"]][:int(item.get("num_options", len(item["options"])))]
    text = encode_text([str(item["question"])], [options], llm.prompts, llm.suffix_len,
                       [str(item["task"])] if "task" in item else None, [str(item["id"])] if "id" in item else None)
    return int(np.argmax(np.asarray(score(llm.params, text))[0])) != int(item["answer"])
  return keep


# Sources that yield decoded "frames" (normalised with the checkpoint's preprocessing, then encoded).
DECODED_SOURCES = (feature_cache.VideoSampleSource, ImagePseudoVideoSource)


def train_source(config, kind: str, llm):
  """The grain source of a curriculum stage: the generated world, the JSONL training set, or pseudo-videos
  of the image QA set."""
  if kind in ("jsonl", "images"):
    return cache.open_source(config, "train" if kind == "jsonl" else cache.IMAGES,
                             strict=config.data.get("strict", False), max_options=llm.num_options)
  fraction = config.data.get("lossy_fraction", 0.0) if kind == "video" else 0.0
  return WorldSource(training_world(config), kind=kind, split="train", size=config.data.train_size,
                     pseudo_video_mode=config.data.pseudo_video_mode,
                     lossy=lossy_settings(config, fraction) if fraction else None)


def training_world(config) -> WorldConfig:
  """The generated world the policy trains on: the embedded model's, or with `config.data.world_distractors`
  = (lo, hi) scenes with that many distractors (e.g. the crowded held-out set's); the frozen model is the same."""
  span = tuple(config.data.get("world_distractors", ()))
  return dataclasses.replace(WORLD, num_distractors=span) if span else WORLD


def model_inputs(batch: dict, llm, preprocess=None) -> dict:
  """A grain batch of any source -> prefix, suffix, suffix_len, answer and either "visual" (feature
  cache: the frozen vision side's output) or normalised "frames" (to run through `llm.encode`)."""
  if "num_options" in batch:  # a JSONL source (videos or images; cached or decoded)
    return feature_cache.model_batch(batch, llm.prompts, llm.suffix_len, preprocess)
  return encode_grain_batch(batch, llm.prompts, llm.suffix_len)


def lossy_settings(config, fraction: float = 1.0) -> LossySettings:
  """The H.264 round trip of the generated world (`config.data.lossy_crf`, `config.data.lossy_sizes`)."""
  return LossySettings(tuple(config.data.lossy_crf), tuple(config.data.lossy_sizes), fraction)


def eval_sets(config) -> tuple[str, ...]:
  """Names of the held-out sets: `config.eval.sets` of the generated world, or ("jsonl",)."""
  return ("jsonl",) if config_checks.eval_source_kind(config) == "jsonl" else tuple(config.eval.sets)


def ordered_batches(config, llm, source, preprocess=None):
  """(grain batch, `model_inputs` of it) over `source` once, in order, `config.eval.batch_size` at a time."""
  it = make_iterator(source, config.eval.batch_size, seed=0, shuffle=False, num_epochs=1, drop_remainder=False,
                     num_threads=config.data.get("num_threads", 2))
  for b in it:
    yield b, model_inputs(b, llm, preprocess)


def heldout_batches(config, llm, eval_set: str = "clean"):
  """Model-ready held-out batches: the generated world's held-out videos `config.eval.start` ...
  `start + samples - 1` (set "clean", "h264": the same videos after an H.264 round trip, or the
  `crowded` scenes of `world.heldout_sets`), or with
  `config.eval.source="jsonl"`, `config.data.eval_file` (its first `config.eval.samples`; 0: all)."""
  preprocess = None
  if config_checks.eval_source_kind(config) == "jsonl":
    src = cache.open_source(config, "eval", strict=config.data.get("strict", False), max_options=llm.num_options)
    if isinstance(src, feature_cache.VideoSampleSource):
      preprocess = cache.preprocess_settings(config)
    src = Head(src, config.eval.samples) if config.eval.samples else src
  else:
    src = WorldSource(heldout_sets.world_of(eval_set, WORLD), kind="video", split="heldout",
                      size=config.eval.samples, start=config.eval.get("start", 0),
                      lossy=lossy_settings(config) if heldout_sets.is_lossy(eval_set) else None)
  for b, inputs in ordered_batches(config, llm, src, preprocess):
    out = dict(inputs, **answer_reading.sample_texts(b))  # + option texts, task
    if "sample_index" in b and "question_type" in b:  # the generated world: ids and question types
      out["id"] = [f"world:{int(i)}" for i in b["sample_index"]]
      out["categories"] = [{"task": category_breakdown.WORLD_TASK, "question_type": str(q)}
                           for q in b["question_type"]]
    yield out


def check_iterator_states(data: dict, stages: list[tuple[str, int]]) -> None:
  """A checkpoint's saved data positions must belong to the configured curriculum stages."""
  saved = data.get("stages")
  kinds = [k for k, _ in stages]
  n = len(data.get("iterators", []))
  if n != len(stages) or (saved is not None and list(saved) != kinds):
    raise ValueError(f"The checkpoint holds data-iterator positions for stages {saved or n} but "
                     f"config.curriculum={','.join(f'{k}:{s}' for k, s in stages)!r} has {kinds}: they "
                     "cannot be resumed. Use another --config.workdir for a new curriculum.")


def train(config, allow_changes=()) -> dict:
  """Trains (or resumes) the run in `config.workdir`; returns final step, params and eval results.

  The whole config is validated before any file is written; an existing workdir must hold the same
  settings (`run_ledger.open_run`; `allow_changes` names keys changed on purpose). Every step's loss
  and state are checked for NaN/Inf before anything is saved; SIGTERM/SIGINT stop the run at the
  next step boundary with a checkpoint of that step (`out["interrupted"]` names the signal).
  """
  stages = config_checks.validate_train_config(config)
  total = sum(s for _, s in stages)
  nproc, pid = jax.process_count(), jax.process_index()
  method = get_method(config)
  workdir = config.workdir
  mesh = shd.make_mesh(tuple(config.model.mesh))
  shard = host_shard.host_shard(mesh, config.batch_size)  # this process's rows of every batch
  run_ledger.open_run(workdir, config, allow_changes, write=distributed.is_main_process())
  llm = load_frozen_llm(config.model, mesh)
  policy = method.make_policy(config)
  tx = make_optimizer(config, total)
  state = method.init_state(config, policy, tx, llm, jax.random.key(config.seed), mesh)
  logging.info("policy parameters: %d", policy_param_count(state.params))
  keep_fn = blind_keep_fn(llm) if config.get("blind_filter", False) else None
  sources = [train_source(config, kind, llm) for kind, _ in stages]
  decoded = [s for s in sources if isinstance(s, DECODED_SOURCES)]
  preprocess = cache.preprocess_settings(config) if decoded else None
  iters = [make_iterator(src, shard.rows, seed=config.seed + i, num_threads=config.data.num_threads,
                         keep_fn=keep_fn, shard=(shard.index, shard.count))
           for i, src in enumerate(sources)]
  samples = sample_log.from_env(pid)  # debug record of the samples read (None unless asked for)
  start = 0
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
  restored = checkpointing.restore_latest(workdir, abstract, lambda d: check_iterator_states(d, stages))
  if restored is not None:
    start, state, data = restored
    for it, s in zip(iters, data["iterators"]):
      it.set_state(s)
    logging.info("Resumed from step %d in %s", start, workdir)
  step_fn = method.make_train_step(config, policy, llm, tx, mesh)
  with_question = method.uses_question(config)
  writer = _summary_writer(workdir)
  base_key = jax.random.key(config.seed + 1)
  mngr = checkpointing.manager(workdir, config.keep_checkpoints)
  bar = tqdm.trange(start, total, initial=start, total=total, desc="train",
                    disable=total == start or not distributed.is_main_process())
  saved, interrupted = start, None
  try:
    with interrupts.StopSignals() as stop:
      for step in bar:
        si = stage_of(step, stages)
        raw = next(iters[si])
        if samples is not None:
          samples.write(step, si, raw)
        b = model_inputs(raw, llm, preprocess)
        video = "visual" if "visual" in b else "frames"  # cached visual tokens skip the vision side
        batch = distributed.global_batch(mesh, {k: b[k] for k in (video, "prefix", "suffix", "suffix_len",
                                                                  "answer", "option_ids", "num_options") if k in b})
        if video == "frames":
          batch["visual"] = llm.encode(llm.params, batch.pop("frames"))
        if with_question:
          batch.update(llm.question_features(batch["suffix"], batch["suffix_len"]))
        state, metrics = step_fn(state, batch, jax.random.fold_in(base_key, step), llm.params)
        loss, finite = jax.device_get((metrics["loss"], checkpointing.all_finite(state)))
        if not (np.isfinite(loss) and finite):
          where = "" if finite else f" in {', '.join(checkpointing.nonfinite_paths(state))}"
          raise FloatingPointError(
              f"Non-finite {'loss' if not np.isfinite(loss) else 'policy state'} at step {step + 1}{where} "
              f"(loss {float(loss)}); this state was not saved, the newest checkpoint is step {saved}. "
              "Try a lower config.optim.learning_rate or config.optim.grad_clip.")
        if (step + 1) % config.log_every == 0 or step + 1 == total:
          m = {k: float(v) for k, v in jax.device_get(metrics).items()}
          for k, v in m.items():
            writer.add_scalar(f"train/{k}", v, step + 1)
          writer.add_scalar("train/stage", si, step + 1)
          if "kept_fraction" in m:  # per stage kind, to see the budget move between curriculum stages
            writer.add_scalar(f"train/kept_fraction_{stages[si][0]}", m["kept_fraction"], step + 1)
          bar.set_postfix(stage=stages[si][0], acc=f"{m['accuracy']:.2f}", loss=f"{m['loss']:.3f}")
        preempted = interrupts.preemption_sync_point(step + 1)
        stop_now = stop.requested_anywhere() or preempted
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == total or stop_now:
          checkpointing.save(mngr, step + 1, state, {"stage": si, "stages": [k for k, _ in stages]},
                             {"iterators": [it.get_state() for it in iters]})  # each process its own
          saved = step + 1
          if step + 1 == config.crash_after_step:
            mngr.wait_until_finished()
            os._exit(3)  # simulated crash: no clean shutdown
        if stop_now:
          interrupted = stop.name or ("a TPU preemption notice" if preempted else "a stop signal on another process")
          break
  finally:
    bar.close()
    checkpointing.finish(mngr)
  out = {"final_step": saved, "updates": int(state.step), "params": state.params}
  if interrupted:
    logging.warning("Stopped by %s after step %d; checkpoint saved in %s. Run the same command to resume.",
                    interrupted, saved, workdir)
    writer.close()
    return dict(out, interrupted=interrupted)
  if config.eval.at_end and nproc > 1:
    logging.info("Multi-process run: evaluate with `python -m score_jax.eval` on one host.")
  elif config.eval.at_end:
    by_set = run_eval(config, llm, method.keep_fn(config, policy, state.params))
    out["eval"], out["eval_sets"] = next(iter(by_set.values())), by_set
    for name, results in by_set.items():
      for key, v in evaluation.results_to_json(results).items():
        if isinstance(v, float):
          tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", key.replace("@", "_at_"))  # TensorBoard's tag alphabet
          writer.add_scalar(f"eval_{name}/{tag}", v, total)
  writer.close()
  return out


def evaluate_and_report(config, llm, policies: dict, baselines, ratios, out_dir: str) -> dict:
  """Every held-out set of `eval_sets(config)`: {set: results}; prints the report, writes it to `out_dir`."""
  results = {name: evaluation.evaluate_methods(llm, functools.partial(heldout_batches, config, llm, name),
                                               ratios, baselines, policies, config.eval.random_seeds, config.seed)
             for name in eval_sets(config)}
  for name, r in results.items():  # accuracy by category: the world's question types, a benchmark's fields
    categories = r.pop("_categories", None) or (
        category_breakdown.read_categories(config.data.eval_file) if name == "jsonl" else {})
    category_breakdown.add_breakdown(r, categories)
  names = list(policies) + list(baselines)
  print(evaluation.format_report(results, ratios, names))
  evaluation.write_reports(results, ratios, names, out_dir)
  return results


def run_eval(config, llm, select) -> dict:
  """Held-out report of the trained policy (named `config.method`) and `config.eval.methods` baselines."""
  return evaluate_and_report(config, llm, {config.method: select},
                             [m for m in config.eval.methods if m != "policy"], tuple(config.eval.ratios),
                             config.workdir)


class _NoWriter:
  def add_scalar(self, *args, **kwargs):
    pass

  def close(self):
    pass


def _summary_writer(workdir: str):
  """TensorBoard event files in workdir/tb, written by process 0 only."""
  if not distributed.is_main_process():
    return _NoWriter()
  from tensorboardX import SummaryWriter
  return SummaryWriter(os.path.join(workdir, "tb"))


# Errors that describe bad input or a damaged run, shown as one message instead of a traceback.
USER_ERRORS = (ValueError, FloatingPointError, FileNotFoundError, checkpointing.CheckpointRestoreError,
               feature_cache.CacheError)


def main(argv, flag_values: dict):
  del argv
  config = flag_values["config"].value
  if config is None:
    sys.exit("Pass --config=experiments/<name>.py")
  if flag_values["distributed"].value:
    distributed.initialize()
  try:
    from score_jax import compilation_cache
    compilation_cache.enable(config)  # config.compilation_cache_dir ("" = off), before the first compile
    out = train(config, flag_values["allow_config_change"].value)
  except USER_ERRORS as e:
    sys.exit(f"error: {e}")
  if out.get("interrupted"):
    sys.exit(128 + int(getattr(signal.Signals, out["interrupted"], signal.SIGTERM)))


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
