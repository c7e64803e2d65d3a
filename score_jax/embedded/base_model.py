"""Builds the embedded default video LLM: the tiny LLaVA-OneVision model trained on the generated world.

    python -m score_jax.embedded.base_model --replay=score_jax/embedded/assets/embedded_llava --out=/tmp/embedded

Supervised training of every parameter (vision tower, projector, decoder) on a mix of generated videos
and static pseudo-videos, answer word or letter at the answer position, each sample seen through one
of the views real video LLMs are trained on (all tokens, random token subsets, strided frames, subsets
of whole objects, pooled grids, H.264 clips; `sft_batches.py`), none of which reads which tokens the
question is about. The result is saved as a Hugging Face checkpoint folder (config.json, model.safetensors,
tokenizer) and from then on read through the same loading code as a downloaded checkpoint. A
`build_info.json` records the world version, the settings and the held-out accuracy (and, for a
build that continued an earlier one, that one's record under "continued_from"); a folder whose
world version differs from the current generator is rebuilt, by default with the shipped copy's
recipe (`--replay`, above: every build of the chain it records, from scratch).

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

from score_jax.compress.baselines.uniform_pool import pool_to_grid
from score_jax.world import generator as world
from score_jax.world.lossy_video import LossySettings
from score_jax.embedded import world_text
from score_jax.embedded.sft_batches import sft_batch
from score_jax.embedded.model_config import embedded_config
from score_jax.models import hf_loading, hf_saving, prefill, sharded, sharding as shd
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.preprocess import normalize_frames

DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "score_jax", "embedded_llava")
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "embedded_llava")
BUILD_INFO = "build_info.json"


class BuildFolderError(ValueError):
  """A folder the embedded-model build will not write into: it holds files the build did not make."""


@dataclasses.dataclass(frozen=True)
class BaseModelSettings:
  steps: int = 5000
  batch_size: int = 16
  learning_rate: float = 2e-3
  warmup_steps: int = 100
  weight_decay: float = 0.01
  pseudo_fraction: float = 0.25
  open_fraction: float = 0.5      # open-ended prompts (target: the answer word); see sft_batches.py
  subset_fraction: float = 0.35   # samples that see a uniformly random token subset (sft_batches.view_masks;
                                  # this and frame_fraction are shares of the rows object_fraction leaves)
  subset_min_rate: float = 0.05
  frame_fraction: float = 0.15    # samples that see every 2nd or 4th frame only
  object_fraction: float = 0.0    # samples that see a random subset of whole objects (sft_batches.object_masks)
  pooled_fraction: float = 0.15   # steps whose whole batch sees pooled grids (POOLED_GRIDS)
  lossy_fraction: float = 0.25    # videos sent through H.264 (world/lossy_video.py's default ranges)
  grounding_fraction: float = 0.25  # rows that point at a named random object (sft_batches.grounding_rows)
  tie_words: bool = False         # dense colour/shape heads score against the decoder's own word vectors
                                  # (`word_tied_logits`): input embeddings at the vision side, the LM
                                  # head at the decoder side
  train_question_types: tuple[str, ...] = ()  # training mix (repeats weight a type; empty: question_types)
  vision_steps: int = 500         # stage 1: vision side alone on dense cell labels (`pretrain_vision`)
  hold_fraction: float = 0.05     # first: scenes without distractors or clutter (see `object_rate`)
  ramp_fraction: float = 0.4      # then: the other objects faded in (WorldConfig.object_rate)
  distractor_step: int = 0        # > 0: after the hold, one more distractor allowed every so many steps
                                  # (`distractor_cap`) instead of fading them in at random
  distractor_first: int = 0       # > 0: the one-distractor stage lasts this many steps (else distractor_step)
  hidden_size: int = 64           # decoder width (model_config.py); heads of 16 dims
  num_layers: int = 3
  vision_hidden_size: int = 48
  vision_layers: int = 1
  kv_heads: int = 0               # decoder key/value heads (0: model_config.py's choice)
  rope_theta: float = 10000.0     # decoder RoPE base
  question_types: tuple[str, ...] = ()  # training questions (empty: the world's); held-out: the same
  eval_every: int = 0             # > 0: log held-out accuracy per question type every so many steps
  eval_samples: int = 512
  seed: int = 0
  init_from: str = ""             # an earlier build's folder to continue from (its settings are kept in
                                  # build_info.json under "continued_from"); "" = from scratch


POOLED_GRIDS: tuple[tuple[int, int], ...] = ((2, 2), (1, 2))  # uniform pooling's grids at 25% and 10-15%


def object_rate(step: int, s: BaseModelSettings) -> float:
  """Scene complexity at `step` (`WorldConfig.object_rate`): 0 (no distractors) for the first
  `hold_fraction` of the steps, then rising linearly to 1 (the full world) over `ramp_fraction`."""
  hold, ramp = s.hold_fraction * s.steps, s.ramp_fraction * s.steps
  if step >= hold + ramp:
    return 1.0
  return float(max(0.0, (step - hold) / max(ramp, 1.0)))


def distractor_cap(step: int, s: BaseModelSettings) -> int:
  """With `distractor_step`: the most distractors a scene may hold at `step` (0 during the hold, 1 for
  `distractor_first` steps (default `distractor_step`), then one more every `distractor_step` steps);
  -1 (no cap) once the world's maximum is reached or without it."""
  if s.distractor_step <= 0:
    return -1
  hold, first = s.hold_fraction * s.steps, s.distractor_first or s.distractor_step
  if step < hold:
    cap = 0
  elif step < hold + first:
    cap = 1
  else:
    cap = 2 + int(step - hold - first) // s.distractor_step
  return -1 if cap >= world_text.WORLD.num_distractors[1] else cap


def world_at(rate: float, cfg: world.WorldConfig, cap: int = -1) -> world.WorldConfig:
  """`cfg` at scene complexity `rate`: distractors drawn with probability rate, clutter at rate**2;
  with `cap` >= 0, the distractors capped at that count instead of thinned."""
  if cap >= 0:
    return dataclasses.replace(cfg, max_distractors=cap, clutter_density=cfg.clutter_density * rate ** 2)
  if rate >= 1.0:
    return cfg
  return dataclasses.replace(cfg, object_rate=rate, clutter_density=cfg.clutter_density * rate ** 2)


class AuxHeads(nn.Module):
  """Training-only heads (not saved). Per visual token: the colour and shape of the object in its
  cell (or none) from the vision side, and the same plus "changed since the previous frame" from
  the decoder's hidden state at that token. These dense scene labels (every object, whatever the
  question) teach a small model to see objects and time quickly; they say nothing about which
  object a question is about. A pointer from the answer position over the visual tokens, trained on
  grounding rows only (a referring expression of a random object, `sft_batches.grounding_rows`)."""
  num_colors: int
  num_shapes: int
  pointer_dim: int = 32

  @nn.compact
  def __call__(self, visual, hidden, answer_hidden):
    """visual [B, T, P, dv], hidden [B, T, P, d] (decoder, at the visual tokens), answer_hidden [B, d]."""
    b = hidden.shape[0]
    keys = nn.Dense(self.pointer_dim, name="pointer_key")(hidden).reshape(b, -1, self.pointer_dim)
    query = nn.Dense(self.pointer_dim, name="pointer_query")(answer_hidden)
    return {"pointer": jnp.einsum("bnd,bd->bn", keys, query) / np.sqrt(self.pointer_dim),
            "vision_color": nn.Dense(self.num_colors + 1, name="vision_color")(visual),
            "vision_shape": nn.Dense(self.num_shapes + 1, name="vision_shape")(visual),
            "llm_color": nn.Dense(self.num_colors + 1, name="llm_color")(hidden),
            "llm_shape": nn.Dense(self.num_shapes + 1, name="llm_shape")(hidden),
            "llm_changed": nn.Dense(2, name="llm_changed")(hidden)}


def pointer_loss(logits, target, valid, rows):
  """Cross-entropy of the pointer [B, N] against the visible `target` tokens (uniform over them), over
  the `rows` [B] that have any visible."""
  target = (target & valid).astype(jnp.float32)
  count = target.sum(-1)
  logp = jax.nn.log_softmax(jnp.where(valid, logits.astype(jnp.float32), -1e9), axis=-1)
  per_row = -(target * logp).sum(-1) / jnp.maximum(count, 1.0)
  has = ((count > 0) & rows).astype(jnp.float32)
  return (per_row * has).sum() / jnp.maximum(has.sum(), 1.0)


def _aux_targets(cells, num_colors, num_shapes):
  """cells int [B, T, P, 2] (-1 = none) -> class targets of `AuxHeads` (none = the last class)."""
  color = jnp.where(cells[..., 0] < 0, num_colors, cells[..., 0])
  shape = jnp.where(cells[..., 1] < 0, num_shapes, cells[..., 1])
  prev = jnp.concatenate([cells[:, :1], cells[:, :-1]], axis=1)
  changed = jnp.any(cells != prev, axis=-1).astype(jnp.int32)
  return {"vision_color": color, "vision_shape": shape, "llm_color": color, "llm_shape": shape,
          "llm_changed": changed}


def word_tied_logits(x, words, none, bias):
  """Class logits [..., K + 1] of features x [..., d] against word vectors `words` [K, d] (the
  decoder's own vectors of the colour or shape words) and a learned `none` vector [d], plus `bias`.
  Question-independent (every object's cell is labelled alike); it puts a visual token of a red
  object along the same direction as the word "red", so a question word and the tokens it names
  share a direction the decoder's attention can match."""
  table = jnp.concatenate([words, none[None]], axis=0).astype(jnp.float32)
  return x.astype(jnp.float32) @ table.T + bias


class TiedHeads(nn.Module):
  """The learned parts of the word-tied dense heads: a `none` vector and a bias per head."""
  num_colors: int
  num_shapes: int
  dim: int

  @nn.compact
  def __call__(self):
    out = {}
    for name, k in (("vision_color", self.num_colors), ("vision_shape", self.num_shapes),
                    ("llm_color", self.num_colors), ("llm_shape", self.num_shapes)):
      out[name] = (self.param(f"{name}_none", nn.initializers.normal(0.02), (self.dim,)),
                   self.param(f"{name}_bias", nn.initializers.zeros, (k + 1,)))
    return out


def tied_head_logits(module, params, tied_params, word_ids, visual, hidden):
  """The four colour/shape heads of `AuxHeads`, word-tied: vision heads against the input
  embeddings of the words, decoder heads against their LM-head rows. `word_ids` = (colour ids,
  shape ids) in the order `cells` indexes."""
  lm = params["language_model"]
  embed = lm["embed_tokens"]["embedding"]
  unembed = embed if "lm_head" not in lm else lm["lm_head"]["kernel"].T
  parts = TiedHeads(len(word_ids[0]), len(word_ids[1]), embed.shape[-1]).apply({"params": tied_params})
  out = {}
  for name, x, table, ids in (("vision_color", visual, embed, word_ids[0]), ("vision_shape", visual, embed, word_ids[1]),
                              ("llm_color", hidden, unembed, word_ids[0]), ("llm_shape", hidden, unembed, word_ids[1])):
    out[name] = word_tied_logits(x, table[jnp.asarray(ids)], *parts[name])
  return out


def _dense_loss(logits, target, balanced: bool = False):
  """Mean cross-entropy; `balanced`: the mean over each class, averaged (a change touches ~3% of the
  tokens, and a plain mean lets the head answer "unchanged" everywhere)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), target)
  if not balanced:
    return ce.mean()
  per_class = [(ce * (target == c)).sum() / jnp.maximum((target == c).sum(), 1) for c in range(logits.shape[-1])]
  return sum(per_class) / len(per_class)


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


def _answer_loss(module, params, visual, keep_valid, batch):
  """(decoder hidden states, logits at [answer, option words], loss) with visual tokens [B, N, d]."""
  n = visual.shape[1]
  keep = prefill.all_keep_indices(visual.shape[0], n)
  inputs = prefill.assemble_inputs(module, params, visual, keep, batch["prefix"], batch["suffix"],
                                   batch["suffix_len"], keep_valid=keep_valid)
  hidden = prefill.decode(module, params, inputs)
  suffix_start = batch["prefix"].shape[1] + n + 1
  pos = jnp.concatenate([inputs.answer_index[:, None], suffix_start + batch["option_pos"]], axis=1)
  scored = jnp.take_along_axis(hidden, pos[..., None], axis=1)  # answer position, then option words
  logits = module.apply({"params": params}, scored, method=LlavaOnevision.logits)
  targets = jnp.concatenate([batch["target"][:, None], batch["option_target"]], axis=1)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  opt_w = batch["option_valid"].astype(jnp.float32)[:, None]
  n_options = ce.shape[1] - 1
  option_loss = (ce[:, 1:] * opt_w).sum() / jnp.maximum(opt_w.sum() * n_options, 1.0)
  answer_w = 1.0 - batch["ground"].astype(jnp.float32)  # grounding rows have no answer target
  answer_loss = (ce[:, 0] * answer_w).sum() / jnp.maximum(answer_w.sum(), 1.0)
  return hidden, scored, logits, answer_loss + option_loss


def _loss_fn(module, aux_module, params, batch, grid: tuple[int, int] | None = None, word_ids=None):
  """Cross-entropy of the answer token and of each option's yes/no (multiple-choice samples); with
  every token's grid (`grid` None) also of the dense per-token labels (`AuxHeads`); with `grid`, the
  frames' token grids are average-pooled to it first (uniform pooling's view, no dense labels). With
  `word_ids` (colour ids, shape ids) the colour/shape heads are word-tied (`tied_head_logits`)."""
  params, aux_params = params
  visual = prefill.encode_video(module, params, batch["frames"])
  b, t, p, _ = visual.shape
  if grid is not None:
    pooled = pool_to_grid(visual, *grid)
    _, _, logits, loss = _answer_loss(module, params, pooled, jnp.ones(pooled.shape[:2], bool), batch)
    return loss, {"acc": _answer_accuracy(logits, batch)}
  hidden, scored, logits, loss = _answer_loss(module, params, visual.reshape(b, t * p, -1), batch["keep_valid"],
                                              batch)
  lp = batch["prefix"].shape[1]
  heads = aux_module.apply({"params": aux_params}, visual, hidden[:, lp:lp + t * p].reshape(b, t, p, -1),
                           scored[:, 0])
  pointer = heads.pop("pointer")
  if word_ids is not None:
    heads.update(tied_head_logits(module, params, aux_params["tied"], word_ids, visual,
                                  hidden[:, lp:lp + t * p].reshape(b, t, p, -1)))
  ground = pointer_loss(pointer, batch["ground_target"], batch["keep_valid"], batch["ground"])
  targets = _aux_targets(batch["cells"], aux_module.num_colors, aux_module.num_shapes)
  aux_loss = sum(_dense_loss(heads[k], targets[k], balanced=k == "llm_changed") for k in heads)
  return loss + aux_loss + ground, {"acc": _answer_accuracy(logits, batch), "ground": ground,
                                    **_aux_accuracies(heads, targets, aux_module)}


def _answer_accuracy(logits, batch):
  """Share of the non-grounding rows whose top token at the answer position is the target."""
  w = 1.0 - batch["ground"].astype(jnp.float32)
  return ((jnp.argmax(logits[:, 0], -1) == batch["target"]) * w).sum() / jnp.maximum(w.sum(), 1.0)


def _vision_loss(module, aux_module, params, batch, word_ids=None):
  """Stage 1: the vision side (tower, projector) and its colour/shape heads on dense cell labels
  (word-tied with `word_ids`, see `tied_head_logits`)."""
  params, aux_params = params
  visual = prefill.encode_video(module, params, batch["frames"])
  targets = _aux_targets(batch["cells"], aux_module.num_colors, aux_module.num_shapes)
  tied = None if word_ids is None else tied_head_logits(module, params, aux_params["tied"], word_ids, visual, visual)
  loss = 0.0
  for name in ("vision_color", "vision_shape"):
    logits = (visual @ aux_params[name]["kernel"] + aux_params[name]["bias"]) if tied is None else tied[name]
    loss = loss + optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets[name]).mean()
  return loss, {"acc": jnp.float32(0.0)}


def pretrain_vision(module, aux_module, params, stream, settings, progress: bool = True, word_ids=None):
  """Stage 1 (`settings.vision_steps`): the vision side learns colours and shapes per cell alone,
  so the decoder starts from features it can use (joint training leaves shape half-learned)."""
  tx = optax.adam(settings.learning_rate)
  opt_state = tx.init(params)
  step = make_step(lambda p, b: _vision_loss(module, aux_module, p, b, word_ids), tx)
  bar = tqdm.trange(settings.vision_steps, desc="embedded vision side", disable=not progress)
  for i in bar:
    samples = [without_target(next(stream)) for _ in range(settings.batch_size)]
    batch = {"frames": normalize_frames(np.stack([s["frames"] for s in samples])),
             "cells": np.stack([s["cells"] for s in samples]).astype(np.int32)}
    params, opt_state, loss, _ = step(params, opt_state, batch)
    if i % 20 == 0:
      bar.set_postfix(loss=f"{float(loss):.3f}")
  return params


def without_target(sample: dict) -> dict:
  """`sample` without the generator's `relevant` mask (the question's target): no training step of the
  embedded model can read it."""
  return {k: v for k, v in sample.items() if k != "relevant"}


def training_samples(rng: np.random.Generator, settings: BaseModelSettings, cfg: world.WorldConfig,
                     lossy: LossySettings) -> list[dict]:
  """One batch of generated samples (pseudo-videos at `settings.pseudo_fraction`), each video sent
  through H.264 at `lossy`'s rate; only the frames change (the dense cell labels stay exact)."""
  out = []
  for _ in range(settings.batch_size):
    s = world_text.sample("pseudo" if rng.random() < settings.pseudo_fraction else "video", rng, cfg)
    s = without_target(s)
    out.append(dict(s, frames=lossy.apply(s["frames"], rng)))
  return out


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


ADDED_SINCE = {"object_fraction": 0.0}  # settings newer than some recorded builds: the value they built with


def recipe(info: dict) -> list[BaseModelSettings]:
  """The settings of a build and of every build it continued from (build_info.json's chain of
  "continued_from"), oldest first; each `init_from` as recorded."""
  links, node = [], info
  while node:
    links.append(node["settings"])
    node = node.get("continued_from")
  known = {f.name for f in dataclasses.fields(BaseModelSettings)}
  chain = []
  for s in reversed(links):
    s = {**ADDED_SINCE, **s}
    unknown, missing = sorted(set(s) - known), sorted(known - set(s))
    if unknown or missing:
      raise ValueError(f"The recorded build settings do not match this version's (unknown: {unknown}, missing: "
                       f"{missing}): replay them with the version of score_jax that made the build.")
    chain.append(BaseModelSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}))
  return chain


def replay_build(out_dir: str, info: dict, progress: bool = True) -> dict:
  """Rebuilds a recorded build (e.g. the shipped model's build_info.json) from scratch: each link of
  `recipe(info)` in turn, each continuing the previous one. Links before the last are kept as
  `<out_dir>.link<i>`; a link already built with the same settings is reused (a rerun resumes) until
  one is rebuilt, after which every later link is rebuilt too."""
  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  chain, previous, result, rebuilt = recipe(info), "", {}, False
  for i, settings in enumerate(chain):
    settings = dataclasses.replace(settings, init_from=previous)
    target = out_dir if i == len(chain) - 1 else f"{out_dir}.link{i}"
    done = None if rebuilt else read_build_info(target)
    if done is not None and is_current(target) and done.get("settings") == json.loads(
        json.dumps(dataclasses.asdict(settings))):
      logging.info("Replay: link %d of %d already built in %s.", i + 1, len(chain), target)
      result = done
    else:
      logging.info("Replay: building link %d of %d into %s.", i + 1, len(chain), target)
      result = build_base_model(target, settings, progress)
      rebuilt = True  # every later link continues this new one: rebuild them too
    previous = target
  return result


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
  earlier = None
  if settings.init_from:
    earlier = read_build_info(settings.init_from)
    if earlier is None:
      raise BuildFolderError(f"--init_from={settings.init_from!r} is not an embedded-model build (no {BUILD_INFO}).")
    loaded_cfg, _, params = hf_loading.load_llava_onevision(settings.init_from, mesh=mesh)
    if loaded_cfg != cfg:
      raise ValueError(f"--init_from={settings.init_from!r} has another architecture than these settings.")
  warmup = min(settings.warmup_steps, settings.steps // 2)
  schedule = optax.warmup_cosine_decay_schedule(0.0, settings.learning_rate, warmup,
                                                max(settings.steps, warmup + 1), settings.learning_rate * 0.05)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=settings.weight_decay))
  aux_module = AuxHeads(len(world_text.WORLD.colors), len(world_text.WORLD.shapes))
  t, p, d = world_text.WORLD.frames, cfg.tokens_per_frame, cfg.text.hidden_size
  aux_params = aux_module.init(jax.random.key(settings.seed + 1), jnp.zeros((1, t, p, cfg.text.hidden_size)),
                               jnp.zeros((1, t, p, d)), jnp.zeros((1, d)))["params"]
  word_ids = None
  if settings.tie_words:
    word_ids = tuple(tuple(int(text.tokenizer.convert_tokens_to_ids(w)) for w in names)
                     for names in (world_text.WORLD.colors, world_text.WORLD.shapes))
    tied = TiedHeads(len(word_ids[0]), len(word_ids[1]), d).init(jax.random.key(settings.seed + 2))["params"]
    aux_params = {**aux_params, "tied": tied}
  params = (params, aux_params)
  world_cfg = world_text.world_config(settings.question_types)
  train_cfg = world_text.world_config(settings.train_question_types or settings.question_types)
  stream = world_text.training_stream(settings.seed, settings.pseudo_fraction, train_cfg)
  if settings.vision_steps:
    params = pretrain_vision(module, aux_module, params, stream, settings, progress, word_ids)
  opt_state = tx.init(params)
  option_ids = jnp.asarray(text.prompts.option_token_ids(4))
  steps = {grid: make_step(functools.partial(_loss_fn, module, aux_module, grid=grid, word_ids=word_ids), tx)
           for grid in (None,) + POOLED_GRIDS}
  cloze = world_text.WorldText.create("option_word")
  probe = world_text.heldout_batches("video", settings.eval_samples, 64, cloze, world_cfg, with_types=True)
  rng = np.random.default_rng([0xBA5E, settings.seed, 3])
  lossy = LossySettings(fraction=settings.lossy_fraction)
  bar = tqdm.trange(settings.steps, desc="embedded base model", disable=not progress)
  ema = None
  for i in bar:
    rate = object_rate(i, settings)
    cap = distractor_cap(i, settings)
    samples = training_samples(rng, settings, world_at(rate, train_cfg, cap), lossy)
    batch = sft_batch(samples, text.prompts, text.suffix_len, rng, settings.open_fraction,
                      settings.subset_fraction, settings.subset_min_rate, settings.frame_fraction,
                      cfg.tokens_per_frame, foreground=rate if rate < 1.0 or cap >= 0 else None,
                      grounding_fraction=settings.grounding_fraction, names=(world_cfg.colors, world_cfg.shapes),
                      object_fraction=settings.object_fraction)
    batch.pop("answer")
    grid = POOLED_GRIDS[int(rng.integers(len(POOLED_GRIDS)))] if rng.random() < settings.pooled_fraction else None
    params, opt_state, loss, metrics = steps[grid](params, opt_state, batch)
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
  accs = {"video_option_word": overall, "video_option_word_by_type": by_type,
          "video_option_word_h264": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "video", settings.eval_samples, 64, cloze, world_cfg, lossy=LossySettings()), option_ids),
          "video": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "video", settings.eval_samples, 64, text, world_cfg), option_ids),
          "pseudo": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "pseudo", settings.eval_samples, 64, text, world_cfg), option_ids),
          "pseudo_option_word": evaluate_full_tokens(module, params, world_text.heldout_batches(
              "pseudo", settings.eval_samples, 64, cloze, world_cfg), option_ids)}
  info = {"world_version": world_text.WORLD_VERSION, "settings": dataclasses.asdict(settings),
          "heldout_accuracy_all_tokens": accs, "build_seconds": round(time.time() - t0, 1)}
  if earlier is not None:
    info["continued_from"] = {k: earlier.get(k) for k in ("settings", "heldout_accuracy_all_tokens",
                                                          "build_seconds", "continued_from") if k in earlier}
  return cfg, params, text.tokenizer, info


def is_current(folder: str) -> bool:
  info = read_build_info(folder)
  return info is not None and info.get("world_version") == world_text.WORLD_VERSION


def ensure_base_model(folder: str = DEFAULT_DIR, settings: BaseModelSettings | None = None,
                      progress: bool = True) -> str:
  """The embedded model's checkpoint folder: for the default folder, the copy shipped with the package
  when it matches the current world; else `folder`, built on first use (or when the world changed)
  with `settings`, by default the shipped copy's own recipe (`replay_build` of its build_info.json).
  A folder that is neither new, empty nor an earlier build raises BuildFolderError."""
  folder = os.path.expanduser(folder)
  if folder == DEFAULT_DIR and is_current(SHIPPED_DIR):
    return SHIPPED_DIR
  if not is_current(folder):
    check_build_folder(folder)
    logging.info("Building the embedded base model in %s (first use).", folder)
    shipped = read_build_info(SHIPPED_DIR)
    if settings is None and shipped is not None:
      info = replay_build(folder, shipped, progress)
    else:
      info = build_base_model(folder, settings or BaseModelSettings(), progress)
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
      rope_theta=flags.DEFINE_float("rope_theta", BaseModelSettings.rope_theta, "decoder RoPE base"),
      kv_heads=flags.DEFINE_integer("kv_heads", BaseModelSettings.kv_heads, "decoder KV heads (0: model_config.py's)"),
      vision_hidden_size=flags.DEFINE_integer("vision_hidden_size", BaseModelSettings.vision_hidden_size,
                                              "vision tower width"),
      vision_layers=flags.DEFINE_integer("vision_layers", BaseModelSettings.vision_layers, "vision tower layers"),
      vision_steps=flags.DEFINE_integer("vision_steps", BaseModelSettings.vision_steps, "stage-1 steps"),
      pooled_fraction=flags.DEFINE_float("pooled_fraction", BaseModelSettings.pooled_fraction,
                                         "share of steps on pooled grids"),
      grounding_fraction=flags.DEFINE_float("grounding_fraction", BaseModelSettings.grounding_fraction,
                                            "share of grounding rows"),
      lossy_fraction=flags.DEFINE_float("lossy_fraction", BaseModelSettings.lossy_fraction,
                                        "share of H.264-encoded training videos"),
      hold_fraction=flags.DEFINE_float("hold_fraction", BaseModelSettings.hold_fraction, "see object_rate"),
      ramp_fraction=flags.DEFINE_float("ramp_fraction", BaseModelSettings.ramp_fraction, "see object_rate"),
      distractor_step=flags.DEFINE_integer("distractor_step", BaseModelSettings.distractor_step, "see distractor_cap"),
      distractor_first=flags.DEFINE_integer("distractor_first", BaseModelSettings.distractor_first, "see distractor_cap"),
      question_types=flags.DEFINE_list("question_types", [], "training/held-out question types (default all)"),
      train_question_types=flags.DEFINE_list("train_question_types", [],
                                             "training mix; a repeated type is drawn more often (default: question_types)"),
      tie_words=flags.DEFINE_bool("tie_words", BaseModelSettings.tie_words, "word-tied colour/shape heads"),
      subset_fraction=flags.DEFINE_float("subset_fraction", BaseModelSettings.subset_fraction,
                                         "share of random-token-subset views"),
      frame_fraction=flags.DEFINE_float("frame_fraction", BaseModelSettings.frame_fraction,
                                        "share of strided-frame views"),
      object_fraction=flags.DEFINE_float("object_fraction", BaseModelSettings.object_fraction,
                                         "share of whole-object-subset views"),
      open_fraction=flags.DEFINE_float("open_fraction", BaseModelSettings.open_fraction, "open-ended prompt share"),
      warmup_steps=flags.DEFINE_integer("warmup_steps", BaseModelSettings.warmup_steps, "warmup steps"),
      init_from=flags.DEFINE_string("init_from", "", "continue training an earlier build's folder"),
      replay=flags.DEFINE_string("replay", "", "rebuild the build recorded in this folder's build_info.json "
                                 "(its whole chain of builds, from scratch; other settings flags are ignored)"),
      eval_every=flags.DEFINE_integer("eval_every", 0, "held-out accuracy by type every so many steps"),
  )


def main(argv, flag_values: dict):
  del argv
  v = {name: holder.value for name, holder in flag_values.items()}
  out = os.path.expanduser(v.pop("out"))
  v["question_types"] = tuple(v["question_types"])
  v["train_question_types"] = tuple(v["train_question_types"])
  if replay := v.pop("replay"):
    recorded = read_build_info(os.path.expanduser(replay))
    if recorded is None:
      raise app.UsageError(f"--replay={replay!r}: no {BUILD_INFO} of an embedded-model build there.")
    info = replay_build(out, recorded)
  else:
    info = build_base_model(out, BaseModelSettings(**v))
  print(json.dumps(info, indent=2))


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
