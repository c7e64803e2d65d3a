"""The embedded default world: cluttered videos of small shapes with one multiple-choice question.

Every sample's answer depends on a single target object of 10-14 px that lies within ~1-2 cells of
16x16 px (one pooled visual token each) per frame; the rest is static clutter and distractor
objects. Distractors always carry the wrong options' colours (or shapes), plus extras drawn from
the whole palette, so global colour or shape statistics do not give the answer away.

Question types (`QUESTION_TYPES`, drawn uniformly):
  moving_color   "what color is the moving shape"          one object moves, the rest are still
  moving_shape   "what shape is moving"
  appear_color   "what color is the shape that appears"    an object appears at frame t > 0
  change_color   "what color does the shape turn into"     an object changes colour at frame t > 0
  static_color   "what color is the <shape>"               the named shape is unique in the scene
  static_shape   "what shape is <color>"                    the named colour is unique in the scene

Preview: `python -m score_jax.world.generator --out /tmp/world.png`.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Sequence

import numpy as np

from score_jax.world.clutter import clutter_background
from score_jax.world.palette import COLORS, SHAPES
from score_jax.world.scene import SceneObject, cell_labels, moving_object, place_in_cell, render, static_object

QUESTION_TYPES: tuple[str, ...] = (
    "moving_color", "moving_shape", "appear_color", "change_color", "static_color", "static_shape")
STATIC_QUESTION_TYPES: tuple[str, ...] = ("static_color", "static_shape")
TEMPLATES: dict[str, str] = {
    "moving_color": "what color is the moving shape",
    "moving_shape": "what shape is moving",
    "appear_color": "what color is the shape that appears",
    "change_color": "what color does the shape turn into",
    "static_color": "what color is the {shape}",
    "static_shape": "what shape is {color}",
}
NUM_OPTIONS = 4


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Generator settings; `seed` is the base seed of the data sources (not used by the generator itself)."""
  frames: int = 8
  size: int = 64
  cell: int = 16  # pixels per pooled visual token (8-px patches pooled 2x2)
  num_distractors: tuple[int, int] = (3, 6)  # inclusive range; at least 3 are always drawn
  object_size: tuple[int, int] = (10, 14)  # inclusive range of object footprints (with outline) in px
  colors: tuple[str, ...] = tuple(COLORS)
  shapes: tuple[str, ...] = SHAPES
  clutter_density: float = 1.0
  speed: tuple[int, int] = (3, 6)  # px per frame of the moving object
  question_types: tuple[str, ...] = QUESTION_TYPES
  seed: int = 0
  # Scene complexity for training curricula: each distractor object is drawn with this probability
  # (1: the world as described above, every held-out set). It reads nothing about any question's
  # answer tokens; it only makes scenes simpler (the embedded model's build fades objects in with it).
  object_rate: float = 1.0
  # Also for curricula: at most this many distractors are kept (-1: no cap); the first ones drawn
  # (those carrying the wrong options' attributes) stay. Blind to the question like `object_rate`.
  max_distractors: int = -1

  def __post_init__(self):
    if len(self.colors) < NUM_OPTIONS or len(self.shapes) < NUM_OPTIONS:
      raise ValueError(f"Need at least {NUM_OPTIONS} colours and shapes for {NUM_OPTIONS} options.")
    if unknown := (set(self.colors) - set(COLORS)) | (set(self.shapes) - set(SHAPES)):
      raise ValueError(f"Unknown colours/shapes {sorted(unknown)}.")
    if unknown := set(self.question_types) - set(QUESTION_TYPES):
      raise ValueError(f"Unknown question types {sorted(unknown)}.")
    if self.size % self.cell or self.object_size[1] > self.cell or self.object_size[0] < 4:
      raise ValueError("Need size % cell == 0 and 4 <= object_size <= cell.")
    if self.frames < 3:
      raise ValueError("Need at least 3 frames for events.")
    if not 0.0 <= self.object_rate <= 1.0:
      raise ValueError(f"object_rate={self.object_rate} must be in [0, 1].")


def vocabulary(cfg: WorldConfig | None = None) -> list[str]:
  """Sorted list of every word that can appear in a question or an option."""
  cfg = cfg or WorldConfig()
  words = set(cfg.colors) | set(cfg.shapes)
  for text in TEMPLATES.values():
    words |= {w for w in text.split() if not w.startswith("{")}
  return sorted(words)


def _pick(rng: np.random.Generator, pool: Sequence[str], exclude: Sequence[str] = ()) -> str:
  choices = [p for p in pool if p not in exclude]
  return choices[int(rng.integers(len(choices)))]


def make_options(rng: np.random.Generator, answer: str, pool: Sequence[str],
                 must: Sequence[str] = ()) -> tuple[list[str], int, list[str]]:
  """(options, answer index, wrong options): `answer` at a uniform position among NUM_OPTIONS unique
  options; the wrong ones are `must` plus random others from `pool`."""
  rest = [p for p in pool if p != answer and p not in must]
  wrong = list(must) + [str(w) for w in rng.choice(rest, NUM_OPTIONS - 1 - len(must), replace=False)]
  options = [wrong[i] for i in rng.permutation(len(wrong))]
  index = int(rng.integers(NUM_OPTIONS))
  options.insert(index, answer)
  return options, index, wrong


def fill(rng: np.random.Generator, base: Sequence[str], pool: Sequence[str], n: int) -> list[str]:
  """`base` followed by `n - len(base)` uniform draws from `pool` (cells are random, so order is free)."""
  return list(base) + [pool[i] for i in rng.integers(len(pool), size=max(n - len(base), 0))]


def event_frame(rng: np.random.Generator, frames: int) -> int:
  """A frame in the middle of the clip (> 0, with at least 2 frames after it) where an event happens."""
  margin = max(1, frames // 4)
  return int(rng.integers(margin, max(margin, frames - margin) + 1))


def place_static(rng: np.random.Generator, cfg: WorldConfig, attrs: Sequence[tuple[str, list[str | None]]],
                 reserved: set[tuple[int, int]] = frozenset(), keep: int | None = None) -> list[SceneObject]:
  """Static objects (shape, per-frame colours) in distinct random free cells.

  The first `keep` (default all) must fit; later ones are dropped when cells run out.
  """
  grid = cfg.size // cfg.cell
  free = [(r, c) for r in range(grid) for c in range(grid) if (r, c) not in reserved]
  keep = len(attrs) if keep is None else keep
  if keep > len(free):
    raise ValueError(f"{keep} objects do not fit in {len(free)} free cells.")
  order = rng.permutation(len(free))
  out = []
  for (shape, colors), k in zip(attrs, order):
    size = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
    out.append(static_object(shape, size, place_in_cell(rng, free[k], size, cfg.cell), colors))
  return out


def _distractor_count(rng: np.random.Generator, cfg: WorldConfig, base: int) -> int:
  return max(int(rng.integers(cfg.num_distractors[0], cfg.num_distractors[1] + 1)), base)


def thin_objects(rng: np.random.Generator, cfg: WorldConfig, attrs: list, keep: int) -> tuple[list, int]:
  """(attrs, keep) with each object drawn with probability `cfg.object_rate` (the first `keep` must fit:
  that count shrinks with them), then at most `cfg.max_distractors` of them. At object_rate 1 nothing
  is drawn from `rng`, so the world is unchanged."""
  if cfg.object_rate < 1.0:
    drawn = rng.random(len(attrs)) < cfg.object_rate
    attrs, keep = [a for a, d in zip(attrs, drawn) if d], int(drawn[:keep].sum())
  if cfg.max_distractors >= 0:
    attrs, keep = attrs[:cfg.max_distractors], min(keep, cfg.max_distractors)
  return attrs, keep


def build_scene(cfg: WorldConfig, rng: np.random.Generator, qtype: str,
                frames: int | None = None) -> tuple[list[SceneObject], str, list[str], int]:
  """(objects with the target last, question, options, answer index) for one question type."""
  t_len = cfg.frames if frames is None else frames
  colors, shapes = list(cfg.colors), list(cfg.shapes)
  target_shape, target_color = _pick(rng, shapes), _pick(rng, colors)
  if qtype.endswith("_shape"):
    options, answer, wrong = make_options(rng, target_shape, shapes)
  elif qtype == "change_color":
    old = _pick(rng, colors, [target_color])
    options, answer, wrong = make_options(rng, target_color, colors, must=[old])
  else:
    options, answer, wrong = make_options(rng, target_color, colors)
  n = _distractor_count(rng, cfg, len(wrong))

  if qtype.endswith("_shape"):  # wrong shapes on distractors; the named colour (if any) stays unique
    d_shapes = fill(rng, wrong, shapes, n)
    d_colors = fill(rng, [], [c for c in colors if qtype != "static_shape" or c != target_color], n)
  else:  # wrong colours on distractors; the named shape (if any) stays unique
    d_colors = fill(rng, wrong, colors, n)
    d_shapes = fill(rng, [], [s for s in shapes if qtype != "static_color" or s != target_shape], n)
  distractors, forced = thin_objects(rng, cfg, [(s, [c] * t_len) for s, c in zip(d_shapes, d_colors)], len(wrong))

  if qtype.startswith("moving"):
    size = int(rng.integers(cfg.object_size[0], cfg.object_size[1] + 1))
    target, reserved = moving_object(rng, target_shape, size, target_color, t_len, cfg.size, cfg.cell, cfg.speed)
    objects = place_static(rng, cfg, distractors, reserved, keep=forced) + [target]
  else:
    t_event = event_frame(rng, t_len)
    if qtype == "appear_color":
      target_colors = [None] * t_event + [target_color] * (t_len - t_event)
    elif qtype == "change_color":
      target_colors = [old] * t_event + [target_color] * (t_len - t_event)
    else:
      target_colors = [target_color] * t_len
    placed = place_static(rng, cfg, [(target_shape, target_colors)] + distractors, keep=1 + forced)
    objects = placed[1:] + placed[:1]
  question = TEMPLATES[qtype].format(shape=target_shape, color=target_color)
  return objects, question, options, answer


def generate_video_sample(cfg: WorldConfig, rng: np.random.Generator, qtype: str | None = None) -> dict:
  """One video QA sample.

  Returns frames uint8 [T, H, W, 3], question str, options list of 4 str, answer int in 0..3,
  question_type str, relevant bool [T, H, W] (target pixels where visible), scene_ids int32 [T] (zeros),
  cells int8 [T, G*G, 2] (colour, shape index of the object in each cell, -1 none; see `cell_labels`).
  """
  qtype = qtype or cfg.question_types[int(rng.integers(len(cfg.question_types)))]
  objects, question, options, answer = build_scene(cfg, rng, qtype)
  background = clutter_background(rng, cfg.size, cfg.clutter_density)
  frames, relevant = render(background, objects, cfg.frames, relevant=(len(objects) - 1,))
  return dict(frames=frames, question=question, options=options, answer=answer, question_type=qtype,
              relevant=relevant, scene_ids=np.zeros(cfg.frames, np.int32),
              cells=cell_labels(objects, cfg.frames, cfg.size, cfg.cell, cfg.colors, cfg.shapes))


def _preview_rows(samples: list[dict], show_relevant: bool) -> np.ndarray:
  rows = []
  for s in samples:
    frames = s["frames"].astype(np.float32)
    if show_relevant:
      frames = np.where(s["relevant"][..., None], frames, frames * 0.25)
    pad = np.full(frames.shape[:1] + (frames.shape[1], 2, 3), 255.0)
    rows.append(np.concatenate(list(np.concatenate([frames, pad], axis=2)), axis=1))
    rows.append(np.full((2,) + rows[-1].shape[1:], 255.0))
  return np.concatenate(rows, axis=0).astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> None:
  """Save a PNG grid (one row of frames per sample) and print the questions."""
  from score_jax.world.png import write_png
  from score_jax.world.pseudo_video import generate_pseudo_video_sample
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="/tmp/world.png")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--pseudo", type=int, default=2, help="number of slideshow pseudo-video rows")
  p.add_argument("--scale", type=int, default=2)
  p.add_argument("--relevant", action="store_true", help="dim everything but the relevant pixels")
  args = p.parse_args(argv)
  cfg, rng = WorldConfig(), np.random.default_rng(args.seed)
  samples = [generate_video_sample(cfg, rng, q) for q in QUESTION_TYPES]
  samples += [generate_pseudo_video_sample(cfg, rng, "slideshow") for _ in range(args.pseudo)]
  for i, s in enumerate(samples):
    print(f"row {i}: [{s['question_type']}] {s['question']}? {s['options']} -> {s['options'][s['answer']]}")
  grid = _preview_rows(samples, args.relevant)
  write_png(args.out, np.repeat(np.repeat(grid, args.scale, 0), args.scale, 1))
  print(f"wrote {args.out} {grid.shape}")


if __name__ == "__main__":
  from score_jax.world import generator as _world  # run the package module, not a second __main__ copy
  _world.main()
