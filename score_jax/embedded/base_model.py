"""Builds the embedded default video LLM: the tiny LLaVA-OneVision model trained on the generated world.

    python -m score_jax.embedded.base_model --out=~/.cache/score_jax/embedded_llava

Supervised training with ALL visual tokens: cross-entropy of the answer letter at the answer position,
every parameter trained (vision tower, projector, decoder), on a mix of generated videos and static
pseudo-videos. The result is saved as a Hugging Face checkpoint folder (config.json, model.safetensors,
tokenizer) and from then on read through the same loading code as a downloaded checkpoint. A
`build_info.json` records the world version, the settings and the held-out accuracy; a folder whose
world version differs from the current generator is rebuilt.

A build writes only into a folder that is new, empty, or an earlier build (has `build_info.json`);
any other folder (a downloaded checkpoint, say) is refused with `BuildFolderError`. The folder is
written under a temporary name next to it and renamed into place when complete, so a crash
mid-build leaves the target as it was.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
import time

from absl import app, flags, logging
import jax
import jax.numpy as jnp
import numpy as np
import flax.linen as nn
import optax
import tqdm

from score_jax.embedded import world_text
from score_jax.embedded.sft_batches import sft_batch
from score_jax.embedded.model_config import embedded_config
from score_jax.models import hf_loading, hf_saving, partial_forward, prefill, sharded, sharding as shd
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.preprocess import normalize_frames

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "score_jax", "embedded_llava")
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "embedded_llava")
BUILD_INFO = "build_info.json"


class BuildFolderError(ValueError):
  """A folder the embedded-model build will not write into: it holds files the build did not make."""


@dataclasses.dataclass(frozen=True)
class BaseModelSettings:
  steps: int = 4000
  batch_size: int = 16
  learning_rate: float = 2e-3
  warmup_steps: int = 100
  weight_decay: float = 0.01
  pseudo_fraction: float = 0.25
  open_fraction: float = 0.5      # open-ended prompts (target: the answer word); see sft_batches.py
  subset_fraction: float = 0.5    # samples that see a random token subset (answer's tokens included)
  subset_min_rate: float = 0.02
  vision_steps: int = 500         # stage 1: vision side alone on dense cell labels (`pretrain_vision`)
  hold_fraction: float = 0.05     # first: the question's object alone (see `object_rate`)
  ramp_fraction: float = 0.3      # then: the other objects faded in (sft_batches.py)
  hidden_size: int = 64           # decoder width (model_config.py); heads of 16 dims
  num_layers: int = 3
  vision_hidden_size: int = 48
  vision_layers: int = 1
  kv_heads: int = 0               # decoder key/value heads (0: model_config.py's choice)
  finder_layer: int = -1          # >= 0: head 0 of this decoder layer is trained to attend to the
                                  # question's object from the answer position (`finder_loss`)
  rope_theta: float = 10000.0     # decoder RoPE base
  question_types: tuple[str, ...] = ()  # training questions (empty: the world's); held-out: the same
  eval_every: int = 0             # > 0: log held-out accuracy per question type every so many steps
  eval_samples: int = 512
  seed: int = 0


def object_rate(step: int, s: BaseModelSettings) -> float | None:
  """Share of the other objects' tokens shown at `step` (None: every token, the plain recipe)."""
  hold, ramp = s.hold_fraction * s.steps, s.ramp_fraction * s.steps
  if step >= hold + ramp:
    return None
  return max(0.0, (step - hold) / max(ramp, 1.0))


class AuxHeads(nn.Module):
  """Training-only heads (not saved). Per visual token: the colour and shape of the object in its
  cell (or none) from the vision side, and the same plus "changed since the previous frame" from
  the decoder's hidden state at that token. A pointer from the answer position over the visual
  tokens, trained to land on the tokens of the object the question is about. Dense labels teach a
  small model to see objects and time quickly, and the pointer where to look; the
  question-answering targets alone leave it at chance for thousands of steps."""
  num_colors: int
  num_shapes: int
  pointer_dim: int = 32

  @nn.compact
  def __call__(self, visual, hidden, answer_hidden):
    """visual [B, T, P, dv], hidden [B, T, P, d] (decoder, at the visual tokens), answer_hidden [B, d]."""
    b = hidden.shape[0]
    keys = nn.Dense(self.pointer_dim, name="pointer_key")(hidden).reshape(b, -1, self.pointer_dim)
    query = nn.Dense(self.pointer_dim, name="pointer_query")(answer_hidden)
    return {"vision_color": nn.Dense(self.num_colors + 1, name="vision_color")(visual),
            "vision_shape": nn.Dense(self.num_shapes + 1, name="vision_shape")(visual),
            "llm_color": nn.Dense(self.num_colors + 1, name="llm_color")(hidden),
            "llm_shape": nn.Dense(self.num_shapes + 1, name="llm_shape")(hidden),
            "llm_changed": nn.Dense(2, name="llm_changed")(hidden),
            "pointer": jnp.einsum("bnd,bd->bn", keys, query) / np.sqrt(self.pointer_dim)}


def pointer_loss(logits, relevant, valid):
  """Cross-entropy of the pointer [B, N] against the relevant visible tokens (uniform over them);
  samples with none visible do not count."""
  target = (relevant & valid).astype(jnp.float32)
  count = target.sum(-1)
  logp = jax.nn.log_softmax(jnp.where(valid, logits.astype(jnp.float32), -1e9), axis=-1)
  per_sample = -(target * logp).sum(-1) / jnp.maximum(count, 1.0)
  has = (count > 0).astype(jnp.float32)
  return (per_sample * has).sum() / jnp.maximum(has.sum(), 1.0)


def _aux_targets(cells, num_colors, num_shapes):
  """cells int [B, T, P, 2] (-1 = none) -> class targets of `AuxHeads` (none = the last class)."""
  color = jnp.where(cells[..., 0] < 0, num_colors, cells[..., 0])
  shape = jnp.where(cells[..., 1] < 0, num_shapes, cells[..., 1])
  prev = jnp.concatenate([cells[:, :1], cells[:, :-1]], axis=1)
  changed = jnp.any(cells != prev, axis=-1).astype(jnp.int32)
  return {"vision_color": color, "vision_shape": shape, "llm_color": color, "llm_shape": shape,
          "llm_changed": changed}


def _dense_loss(logits, target, balanced: bool = False):
  """Mean cross-entropy; `balanced`: the mean over each class, averaged (a change touches ~3% of the
  tokens, and a plain mean lets the head answer "unchanged" everywhere)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), target)
  if not balanced:
    return ce.mean()
  per_class = [(ce * (target == c)).sum() / jnp.maximum((target == c).sum(), 1) for c in range(logits.shape[-1])]
  return sum(per_class) / len(per_class)


def _pointer_hit(logits, relevant, valid):
  """Share of samples (with a visible target) whose pointer's top token is one of the target's."""
  top = jnp.argmax(jnp.where(valid, logits, -jnp.inf), axis=-1)
  hit = jnp.take_along_axis(relevant & valid, top[:, None], axis=1)[:, 0]
  has = jnp.any(relevant & valid, axis=-1)
  return (hit & has).sum() / jnp.maximum(has.sum(), 1)


def _aux_accuracies(heads, targets, aux_module):
  """Accuracy of each dense head on the tokens that hold an object (changed: on changed tokens),
  to tell which skill a stalled model lacks."""
  objects = targets["vision_color"] < aux_module.num_colors
  out = {}
  for name, logits in heads.items():
    where = targets[name] == 1 if name == "llm_changed" else objects
    ok = (jnp.argmax(logits, -1) == targets[name]) & where
    out[name] = ok.sum() / jnp.maximum(where.sum(), 1)
  return out


def _decode_with_finder(module, params, inputs, layer: int):
  """(final hidden states [B, L, d], attention [B, L] of query head 0 of decoder layer `layer` at the
  answer position): the same forward as `prefill.decode`, run layer by layer."""
  x = partial_forward.forward_layers(module, params, inputs, layer)
  q, k = partial_forward.layer_query_key(module, params, x, inputs.positions, layer)
  q0 = jnp.take_along_axis(q[:, :, :1], inputs.answer_index[:, None, None, None], axis=1)
  attention = partial_forward.attention_rows(q0, k[:, :, :1], inputs.answer_index[:, None], inputs.valid)[:, 0]
  x = partial_forward.forward_layers(module, params, inputs, module.cfg.text.num_hidden_layers, start=layer, x=x)
  return partial_forward.final_norm(module, params, x), attention


def finder_loss(attention, target):
  """-log of the attention mass [B, N] a head puts on the target tokens (bool [B, N]), averaged over
  samples with a visible target. Trains one head of a middle layer to fetch what the question asks
  about, so the layers after it can read the answer from what it fetched."""
  mass = (attention * target).sum(-1)
  has = target.any(-1).astype(jnp.float32)
  return -(jnp.log(mass + 1e-6) * has).sum() / jnp.maximum(has.sum(), 1.0)


def _loss_fn(module, aux_module, params, batch, finder_layer: int = -1):
  """Cross-entropy of the answer token, of each option's yes/no (multiple-choice samples), and of
  the dense per-token labels (`AuxHeads`)."""
  params, aux_params = params
  n = batch["visual_n"]
  visual = prefill.encode_video(module, params, batch["frames"])
  keep = prefill.all_keep_indices(visual.shape[0], n)
  inputs = prefill.assemble_inputs(module, params, visual, keep, batch["prefix"], batch["suffix"],
                                   batch["suffix_len"], keep_valid=batch["keep_valid"])
  lp = batch["prefix"].shape[1]
  if finder_layer < 0:
    hidden, finder = prefill.decode(module, params, inputs), jnp.float32(0.0)
  else:
    hidden, attention = _decode_with_finder(module, params, inputs, finder_layer)
    target = batch["relevant"] & batch["keep_valid"]
    finder = finder_loss(attention[:, lp:lp + n], target)
  suffix_start = batch["prefix"].shape[1] + n + 1
  pos = jnp.concatenate([inputs.answer_index[:, None], suffix_start + batch["option_pos"]], axis=1)
  scored = jnp.take_along_axis(hidden, pos[..., None], axis=1)  # answer position, then option words
  logits = module.apply({"params": params}, scored, method=LlavaOnevision.logits)
  targets = jnp.concatenate([batch["target"][:, None], batch["option_target"]], axis=1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  opt_w = batch["option_valid"].astype(jnp.float32)[:, None]
  n_options = ce.shape[1] - 1
  option_loss = (ce[:, 1:] * opt_w).sum() / jnp.maximum(opt_w.sum() * n_options, 1.0)
  b, t, p, d = visual.shape
  heads = aux_module.apply({"params": aux_params}, visual, hidden[:, lp:lp + n].reshape(b, t, p, -1),
                           scored[:, 0])
  pointer_logits = heads.pop("pointer")
  pointer = pointer_loss(pointer_logits, batch["relevant"], batch["keep_valid"])
  pointer_hit = _pointer_hit(pointer_logits, batch["relevant"], batch["keep_valid"])
  targets = _aux_targets(batch["cells"], aux_module.num_colors, aux_module.num_shapes)
  aux_loss = sum(_dense_loss(heads[k], targets[k], balanced=k == "llm_changed") for k in heads) + pointer
  loss = ce[:, 0].mean() + option_loss + aux_loss + finder
  return loss, {"finder": finder, "acc": (jnp.argmax(logits[:, 0], -1) == batch["target"]).mean(),
                **_aux_accuracies(heads, targets, aux_module), "pointer": pointer_hit}


def _vision_loss(module, aux_module, params, batch):
  """Stage 1: the vision side (tower, projector) and its colour/shape heads on dense cell labels."""
  params, aux_params = params
  visual = prefill.encode_video(module, params, batch["frames"])
  targets = _aux_targets(batch["cells"], aux_module.num_colors, aux_module.num_shapes)
  loss = 0.0
  for name in ("vision_color", "vision_shape"):
    logits = visual @ aux_params[name]["kernel"] + aux_params[name]["bias"]
    loss = loss + optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets[name]).mean()
  return loss, {"acc": jnp.float32(0.0)}


def pretrain_vision(module, aux_module, params, stream, settings, progress: bool = True):
  """Stage 1 (`settings.vision_steps`): the vision side learns colours and shapes per cell alone,
  so the decoder starts from features it can use (joint training leaves shape half-learned)."""
  tx = optax.adam(settings.learning_rate)
  opt_state = tx.init(params)
  step = make_step(lambda p, b: _vision_loss(module, aux_module, p, b), tx)
  bar = tqdm.trange(settings.vision_steps, desc="embedded vision side", disable=not progress)
  for i in bar:
    samples = [next(stream) for _ in range(settings.batch_size)]
    batch = {"frames": normalize_frames(np.stack([s["frames"] for s in samples])),
             "cells": np.stack([s["cells"] for s in samples]).astype(np.int32)}
    params, opt_state, loss, _ = step(params, opt_state, batch)
    if i % 20 == 0:
      bar.set_postfix(loss=f"{float(loss):.3f}")
  return params


def make_step(loss_fn, tx):
  """Jitted (params, opt_state, batch) -> (params, opt_state, loss, metrics) for
  loss_fn(params, batch) -> (loss, metrics); params and optimizer state are donated."""
  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt_state, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, metrics
  return step


def evaluate_full_tokens(module, params, batches, option_ids, by_type: bool = False):
  """Held-out accuracy of the model with all visual tokens (and per question type if `by_type`); options
  are scored by the batches' own "option_ids" when they have them, else by `option_ids` (letters)."""
  @jax.jit
  def predict(params, b):
    visual = prefill.encode_video(module, params, b["frames"])
    keep = prefill.all_keep_indices(visual.shape[0], visual.shape[1] * visual.shape[2])
    logits = prefill.prefill_logits(module, params, visual, keep, b["prefix"], b["suffix"], b["suffix_len"])
    return jnp.argmax(prefill.option_logprobs(logits, prefill.choice_ids(b, option_ids)), -1)
  hits: dict[str, list[bool]] = {}
  for b in batches:
    pred = np.asarray(predict(params, {k: v for k, v in b.items() if k not in ("answer", "question_type")}))
    for qtype, ok in zip(b.get("question_type", ["all"] * len(pred)), pred == b["answer"]):
      hits.setdefault(str(qtype), []).append(bool(ok))
  overall = float(np.mean([h for v in hits.values() for h in v])) if hits else 0.0
  if not by_type:
    return overall
  return overall, {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())}


def read_build_info(folder: str) -> dict | None:
  """The folder's build_info.json as written by `build_base_model`, or None."""
  try:
    with open(os.path.join(folder, BUILD_INFO)) as f:
      info = json.load(f)
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) and "world_version" in info else None


def check_build_folder(folder: str) -> None:
  """Raises BuildFolderError unless `folder` is absent, empty, or an earlier build of ours."""
  if not os.path.exists(folder):
    return
  if not os.path.isdir(folder):
    raise BuildFolderError(f"Cannot build the embedded model in {folder!r}: it is a file, not a folder.")
  entries = sorted(os.listdir(folder))
  if not entries or read_build_info(folder) is not None:
    return
  hf = "config.json" in entries or any(n.endswith(".safetensors") for n in entries)
  hint = (" It looks like a Hugging Face checkpoint; to use it as the frozen LLM set "
          "--config.model.kind=hf." if hf else "")
  shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
  raise BuildFolderError(
      f"Refusing to build the embedded model in {folder!r}: the folder holds files it did not make "
      f"({shown}) and no {BUILD_INFO}.{hint} To build the embedded model, pass a new or empty folder.")


def build_base_model(out_dir: str, settings: BaseModelSettings = BaseModelSettings(), progress: bool = True
                     ) -> dict:
  """Trains the embedded model and saves it to `out_dir` (new, empty, or an earlier build); returns
  the build info."""
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  check_build_folder(out_dir)
  cfg, params, tokenizer, info = train_base_model(settings, progress)
  save_base_model(out_dir, cfg, params, tokenizer, info)
  return info


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def _swap_in(tmp: str, target: str) -> None:
  """Renames the finished folder `tmp` to `target`; an existing (empty or earlier-build) target is
  moved aside first and deleted once the new one is in place."""
  if not os.path.exists(target):
    os.rename(tmp, target)
    return
  old = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.old-")
  os.rmdir(old)
  os.rename(target, old)
  try:
    os.rename(tmp, target)
  except OSError:
    os.rename(old, target)
    raise
  shutil.rmtree(old, ignore_errors=True)


def save_base_model(out_dir: str, cfg, params, tokenizer, info: dict) -> None:
  """Writes the checkpoint and build_info.json to a temporary folder beside `out_dir`, then renames
  it into place; on any error the temporary folder is removed and `out_dir` left as it was."""
  target = os.path.abspath(os.path.expanduser(out_dir))
  check_build_folder(target)
  parent = os.path.dirname(target)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(target)}.tmp-")
  try:
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would stick to the renamed folder
    hf_saving.save_llava_onevision(tmp, cfg, params, tokenizer)
    with open(os.path.join(tmp, BUILD_INFO), "w") as f:
      json.dump(info, f, indent=2)
    check_build_folder(target)  # again: training takes long, and the folder may have changed
    _swap_in(tmp, target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def train_base_model(settings: BaseModelSettings = BaseModelSettings(), progress: bool = True):
  """(config, params, tokenizer, build info) of the embedded model trained with `settings`."""
  t0 = time.time()
  text = world_text.WorldText.create()
  cfg = embedded_config(len(text.tokenizer), *text.special_ids(), hidden_size=settings.hidden_size,
                        num_layers=settings.num_layers, vision_hidden_size=settings.vision_hidden_size,
                        vision_layers=settings.vision_layers)
  text_cfg = dataclasses.replace(cfg.text, rope_theta=settings.rope_theta,
                                 num_key_value_heads=settings.kv_heads or cfg.text.num_key_value_heads)
  cfg = dataclasses.replace(cfg, text=text_cfg)
  module = LlavaOnevision(cfg)
  mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  params = sharded.init_llava_params(module, mesh, jax.random.key(settings.seed))
  warmup = min(settings.warmup_steps, settings.steps // 2)
  schedule = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate, warmup,
                                                max(settings.steps, warmup + 1), settings.learning_rate * 0.05)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=settings.weight_decay))
  aux_module = AuxHeads(len(world_text.WORLD.colors), len(world_text.WORLD.shapes))
  t, p, d = world_text.WORLD.frames, cfg.tokens_per_frame, cfg.text.hidden_size
  aux_params = aux_module.init(jax.random.key(settings.seed + 1), jnp.zeros((1, t, p, cfg.text.hidden_size)),
                               jnp.zeros((1, t, p, d)), jnp.zeros((1, d)))["params"]
  params = (params, aux_params)
  world_cfg = world_text.world_config(settings.question_types)
  stream = world_text.training_stream(settings.seed, settings.pseudo_fraction, world_cfg)
  if settings.vision_steps:
    params = pretrain_vision(module, aux_module, params, stream, settings, progress)
  opt_state = tx.init(params)
  option_ids = jnp.asarray(text.prompts.option_token_ids(4))
  num_visual = world_text.WORLD.frames * cfg.tokens_per_frame
  step = make_step(lambda p, b: _loss_fn(module, aux_module, p, dict(b, visual_n=num_visual),
                                         settings.finder_layer), tx)
  probe = world_text.heldout_batches("video", settings.eval_samples, 64, text, world_cfg, with_types=True)
  rng = np.random.default_rng([0xBA5E, settings.seed, 3])
  bar = tqdm.trange(settings.steps, desc="embedded base model", disable=not progress)
  ema = None
  for i in bar:
    samples = [next(stream) for _ in range(settings.batch_size)]
    batch = sft_batch(samples, text.prompts, text.suffix_len, rng, settings.open_fraction,
                      settings.subset_fraction, settings.subset_min_rate, object_rate=object_rate(i, settings))
    batch.pop("answer")
    params, opt_state, loss, metrics = step(params, opt_state, batch)
    if i % 20 == 0 or i == settings.steps - 1:
      acc = float(metrics["acc"])
      ema = acc if ema is None else 0.8 * ema + 0.2 * acc
      bar.set_postfix(loss=f"{float(loss):.3f}", acc=f"{ema:.2f}")
    if settings.eval_every and (i + 1) % settings.eval_every == 0 and i + 1 < settings.steps:
      logging.info("step %d held-out accuracy (all tokens, by type): %s; last batch: %s", i + 1,
                   evaluate_full_tokens(module, params[0], probe, option_ids, by_type=True),
                   {k: round(float(v), 3) for k, v in metrics.items()})
  params = params[0]
  overall, by_type = evaluate_full_tokens(module, params, probe, option_ids, by_type=True)
  cloze = world_text.WorldText.create("option_word")
  accs = {"video": overall, "video_by_type": by_type,
          "video_option_word": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "video", settings.eval_samples, 64, cloze, world_cfg), option_ids),
          "pseudo": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "pseudo", settings.eval_samples, 64, text, world_cfg), option_ids),
          "pseudo_option_word": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "pseudo", settings.eval_samples, 64, cloze, world_cfg), option_ids)}
  info = {"world_version": world_text.WORLD_VERSION, "settings": dataclasses.asdict(settings),
          "heldout_accuracy_all_tokens": accs, "build_seconds": round(time.time() - t0, 1)}
  return cfg, params, text.tokenizer, info


def is_current(folder: str) -> bool:
  info = read_build_info(folder)
  return info is not None and info.get("world_version") == world_text.WORLD_VERSION


def ensure_base_model(folder: str = DEFAULT_DIR, settings: BaseModelSettings = BaseModelSettings(),
                      progress: bool = True) -> str:
  """The embedded model's checkpoint folder: for the default folder, the copy shipped with the package
  when it matches the current world; else `folder`, built on first use (or when the world changed).
  A folder that is neither new, empty nor an earlier build raises BuildFolderError."""
  folder = os.path.expanduser(folder)
  if folder == DEFAULT_DIR and is_current(SHIPPED_DIR):
    return SHIPPED_DIR
  if not is_current(folder):
    check_build_folder(folder)
    logging.info("Building the embedded base model in %s (first use).", folder)
    info = build_base_model(folder, settings, progress)
    logging.info("Embedded base model: %s", info)
  return folder


def load_base_model(folder: str = DEFAULT_DIR, mesh=None):
  """(config, module, params, WorldText) of the embedded model, through the HF checkpoint loader."""
  folder = ensure_base_model(folder)
  cfg, module, params = hf_loading.load_llava_onevision(folder, mesh=mesh)
  return cfg, module, params, world_text.WorldText.from_folder(folder)


def _define_flags() -> dict:
  """Command-line flags, defined only when this module runs as a program."""
  return dict(
      out=flags.DEFINE_string("out", DEFAULT_DIR, "output checkpoint folder"),
      steps=flags.DEFINE_integer("steps", BaseModelSettings.steps, "training steps"),
      seed=flags.DEFINE_integer("seed", 0, "seed"),
      learning_rate=flags.DEFINE_float("learning_rate", BaseModelSettings.learning_rate, "peak learning rate"),
      batch_size=flags.DEFINE_integer("batch_size", BaseModelSettings.batch_size, "samples per step"),
      hidden_size=flags.DEFINE_integer("hidden_size", BaseModelSettings.hidden_size, "decoder width"),
      num_layers=flags.DEFINE_integer("num_layers", BaseModelSettings.num_layers, "decoder layers"),
      finder_layer=flags.DEFINE_integer("finder_layer", BaseModelSettings.finder_layer,
                                        "decoder layer whose head 0 learns to attend to the target (-1: none)"),
      rope_theta=flags.DEFINE_float("rope_theta", BaseModelSettings.rope_theta, "decoder RoPE base"),
      kv_heads=flags.DEFINE_integer("kv_heads", BaseModelSettings.kv_heads, "decoder KV heads (0: model_config.py's)"),
      vision_hidden_size=flags.DEFINE_integer("vision_hidden_size", BaseModelSettings.vision_hidden_size,
                                              "vision tower width"),
      vision_layers=flags.DEFINE_integer("vision_layers", BaseModelSettings.vision_layers, "vision tower layers"),
      vision_steps=flags.DEFINE_integer("vision_steps", BaseModelSettings.vision_steps, "stage-1 steps"),
      hold_fraction=flags.DEFINE_float("hold_fraction", BaseModelSettings.hold_fraction, "see object_rate"),
      ramp_fraction=flags.DEFINE_float("ramp_fraction", BaseModelSettings.ramp_fraction, "see object_rate"),
      question_types=flags.DEFINE_list("question_types", [], "training/held-out question types (default all)"),
      eval_every=flags.DEFINE_integer("eval_every", 0, "held-out accuracy by type every so many steps"),
  )


def main(argv, flag_values: dict):
  del argv
  v = {name: holder.value for name, holder in flag_values.items()}
  out = os.path.expanduser(v.pop("out"))
  v["question_types"] = tuple(v["question_types"])
  info = build_base_model(out, BaseModelSettings(**v))
  print(json.dumps(info, indent=2))


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
