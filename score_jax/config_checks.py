"""Whole-config validation, run before a command writes anything or loads a model.

Every check names the config field (as `--config.x=y` spells it) and what is allowed, so a bad
value fails in the first second instead of after a training run.
"""
from __future__ import annotations

from typing import Sequence

from score_jax.world.generator import WorldConfig
from score_jax.world.heldout_sets import HELDOUT_SETS

# Baselines that read the generated world's per-token oracle scores (absent from JSONL data).
NEEDS_WORLD = ("oracle",)
DATA_KINDS = ("pseudo", "video", "jsonl", "images")
EVAL_SOURCES = ("world", "jsonl")
MODEL_KINDS = ("embedded", "hf")
EVAL_SETS = HELDOUT_SETS


def dotted_parent(config, key: str):
  """(the node that holds the last part of the dotted `key`, that part) in a nested config, or None when
  any part of "a.b.c" is missing."""
  *path, leaf = key.split(".")
  node = config
  for part in path:
    if part not in node:
      return None
    node = node[part]
  return (node, leaf) if leaf in node else None


def parse_curriculum(spec: str) -> list[tuple[str, int]]:
  """"pseudo:150,video:350" -> [("pseudo", 150), ("video", 350)]; "jsonl:2000" trains on config.data.train_file,
  "images:200" on pseudo-videos of config.data.image_file."""
  stages = []
  for part in spec.split(","):
    try:
      kind, steps = part.strip().split(":")
      steps = int(steps)
    except ValueError:
      raise ValueError(f"config.curriculum={spec!r}: each stage must look like 'kind:steps'.") from None
    if kind not in DATA_KINDS or steps < 0:
      raise ValueError(f"config.curriculum={spec!r}: kind must be one of {DATA_KINDS}, steps >= 0.")
    stages.append((kind, steps))
  if not sum(s for _, s in stages):
    raise ValueError(f"config.curriculum={spec!r} has no training steps.")
  return stages


def eval_source_kind(config) -> str:
  kind = config.eval.get("source", "world")
  if kind not in EVAL_SOURCES:
    raise ValueError(f"config.eval.source={kind!r}; expected one of {EVAL_SOURCES}.")
  return kind


def _positive_int(config, key: str) -> None:
  node = config
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  value = node.get(leaf)
  if not isinstance(value, int) or isinstance(value, bool) or value < 1:
    raise ValueError(f"config.{key}={value!r} must be a positive integer.")


def check_ratios(ratios: Sequence[float], field: str = "config.eval.ratios") -> tuple[float, ...]:
  """Retention ratios in (0, 1]; 0 would silently keep one token."""
  try:
    out = tuple(float(r) for r in ratios)
  except (TypeError, ValueError):
    raise ValueError(f"{field}={ratios!r}: ratios must be numbers in (0, 1].") from None
  bad = [r for r in out if not 0.0 < r <= 1.0]
  if not out or bad:
    raise ValueError(f"{field}={ratios!r}: every ratio must be in (0, 1] (got {bad or 'none'}).")
  return out


def check_eval_methods(methods: Sequence[str], source: str, field: str = "config.eval.methods") -> list[str]:
  """Known baseline names (plus "policy"); world-only baselines refused on JSONL data."""
  from score_jax.compress.baselines import method_names
  known = set(method_names()) | {"policy"}
  unknown = [m for m in methods if m not in known]
  if unknown:
    raise ValueError(f"{field}: unknown method(s) {unknown}; known: {sorted(known)}.")
  if source != "world":
    world_only = [m for m in methods if m in NEEDS_WORLD]
    if world_only:
      raise ValueError(f"{field} includes {world_only}, which needs the generated world's oracle scores; "
                       f"config.eval.source={source!r} has none. Drop it, e.g. "
                       f"--config.eval.methods={','.join(m for m in methods if m not in NEEDS_WORLD)}.")
  return list(methods)


def check_model(model_config) -> None:
  if model_config.kind not in MODEL_KINDS:
    raise ValueError(f"config.model.kind={model_config.kind!r}; expected one of {MODEL_KINDS}.")
  if model_config.kind == "hf" and not model_config.checkpoint:
    raise ValueError("config.model.kind='hf' needs config.model.checkpoint (a local checkpoint folder).")
  check_prompt_style(model_config)
  from score_jax.models.answer_reading import reading_settings
  reading_settings(model_config)  # config.model.answer_reading / max_new_tokens
  from score_jax.frozen_llm import attention_implementation
  from score_jax.models.attention import IMPLEMENTATIONS
  attention = attention_implementation(model_config)
  if attention not in IMPLEMENTATIONS:
    raise ValueError(f"config.model.attention={attention!r}; expected one of {IMPLEMENTATIONS}.")


def check_prompt_style(model_config) -> None:
  """`config.model.prompt_style` is known, and "lmms_eval" (lettered options) reads letters."""
  from score_jax.frozen_llm import answer_format, prompt_style
  from score_jax.models.prompt import PROMPT_STYLES
  style = prompt_style(model_config)
  if style not in PROMPT_STYLES:
    raise ValueError(f"config.model.prompt_style={style!r}; expected one of {PROMPT_STYLES}.")
  if style == "lmms_eval" and answer_format(model_config) != "letter":
    raise ValueError(f"config.model.prompt_style='lmms_eval' shows lettered options, as lmms-eval does; it needs "
                     f"config.model.answer_format='letter' (got {answer_format(model_config)!r}).")


def check_data_files(config, stages, source: str) -> None:
  if any(kind == "jsonl" for kind, _ in stages) and not config.data.get("train_file"):
    raise ValueError(f"config.curriculum={config.curriculum!r} has a 'jsonl' stage: set config.data.train_file.")
  if any(kind == "images" for kind, _ in stages) and not config.data.get("image_file"):
    raise ValueError(f"config.curriculum={config.curriculum!r} has an 'images' stage: set config.data.image_file "
                     "(an image QA JSONL file, see score_jax.data.image_qa_format).")
  if source == "jsonl" and not config.data.get("eval_file"):
    raise ValueError("config.eval.source='jsonl' needs config.data.eval_file.")


def check_eval_config(config, with_lists: bool = True) -> str:
  """The held-out settings shared by `train` and `eval` (`with_lists=False`: ratios and methods come
  from the command line instead); returns the eval source."""
  source = eval_source_kind(config)
  if with_lists:
    check_ratios(config.eval.ratios)
    check_eval_methods(config.eval.methods, source)
  for key in ("eval.batch_size", "eval.random_seeds"):
    _positive_int(config, key)
  if not isinstance(config.eval.samples, int) or config.eval.samples < 0:
    raise ValueError(f"config.eval.samples={config.eval.samples!r} must be >= 0 (0: all of the eval file).")
  if source == "world" and config.eval.samples < 1:
    raise ValueError("config.eval.samples must be >= 1 with config.eval.source='world'.")
  sets = tuple(config.eval.get("sets", ("clean",)))
  if source == "world" and (not sets or any(x not in EVAL_SETS for x in sets) or len(set(sets)) != len(sets)):
    raise ValueError(f"config.eval.sets={sets!r}: name each of {EVAL_SETS} at most once.")
  if config.eval.get("start", 0) < 0:
    raise ValueError(f"config.eval.start={config.eval.start} must be >= 0.")
  return source


def check_world_distractors(config) -> None:
  """`config.data.world_distractors`: () (the world's own range) or (lo, hi) with 3 <= lo <= hi <= cells - 1 (one
  cell for the target; 3 distractors carry the wrong options)."""
  span = tuple(config.data.get("world_distractors", ()))
  most = (WorldConfig.size // WorldConfig.cell) ** 2 - 1
  if span and not (len(span) == 2 and all(isinstance(v, int) for v in span) and 3 <= span[0] <= span[1] <= most):
    raise ValueError(f"config.data.world_distractors={span!r} must be () or (lo, hi) with 3 <= lo <= hi <= {most}.")


def validate_train_config(config) -> list[tuple[str, int]]:
  """Checks everything `train` reads before it writes a file; returns the curriculum stages."""
  from score_jax.methods import get_method
  stages = parse_curriculum(config.curriculum)
  check_model(config.model)
  source = check_eval_config(config)
  check_data_files(config, stages, source)
  for key in ("batch_size", "log_every", "checkpoint_every", "keep_checkpoints"):
    _positive_int(config, key)
  from score_jax import compilation_cache
  compilation_cache.check(config)  # config.compilation_cache_dir
  check_world_distractors(config)
  method = get_method(config)
  method.settings(config)     # the method's own settings (ratios, group sizes, ...) raise here
  method.make_policy(config)
  return stages
