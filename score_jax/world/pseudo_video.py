"""Stage-1 static pseudo-videos: still scenes held for several frames, with abrupt cuts between them.

`repeat_single_image` holds one still scene for all frames; `slideshow` cuts between 2-3 still
scenes (each at least 2 frames, each with its own clutter). The question (static_color or
static_shape) is about an object of one scene, and its named shape/colour is unique in the whole
video. The output dict matches `world.generate_video_sample`; `scene_ids` [T] gives each frame's scene.
"""
from __future__ import annotations

import itertools

import numpy as np

from score_jax.world.clutter import clutter_background
from score_jax.world.scene import cell_labels, render
from score_jax.world.generator import STATIC_QUESTION_TYPES, WorldConfig, build_scene, fill, place_static, thin_objects

PSEUDO_VIDEO_MODES: tuple[str, ...] = ("repeat_single_image", "slideshow")


def segment_lengths(rng: np.random.Generator, frames: int, num_scenes: int, min_len: int = 2) -> list[int]:
  """Uniformly drawn lengths (each >= min_len) of `num_scenes` consecutive segments covering `frames`."""
  num_scenes = max(1, min(num_scenes, frames // min_len))
  splits = [c for c in itertools.combinations(range(min_len, frames - min_len + 1), num_scenes - 1)
            if all(b - a >= min_len for a, b in zip(c, c[1:]))]
  cuts = (0,) + splits[int(rng.integers(len(splits)))] + (frames,)
  return [b - a for a, b in zip(cuts, cuts[1:])]


def generate_pseudo_video_sample(cfg: WorldConfig, rng: np.random.Generator,
                                 pseudo_video_mode: str = "slideshow", num_scenes: tuple[int, int] = (2, 3),
                                 qtype: str | None = None) -> dict:
  """One pseudo-video QA sample, same keys as `generate_video_sample`."""
  if pseudo_video_mode not in PSEUDO_VIDEO_MODES:
    raise ValueError(f"pseudo_video_mode must be one of {PSEUDO_VIDEO_MODES}, got {pseudo_video_mode!r}.")
  types = [q for q in cfg.question_types if q in STATIC_QUESTION_TYPES] or list(STATIC_QUESTION_TYPES)
  qtype = qtype or types[int(rng.integers(len(types)))]
  n = 1 if pseudo_video_mode == "repeat_single_image" else int(rng.integers(num_scenes[0], num_scenes[1] + 1))
  lengths = segment_lengths(rng, cfg.frames, n)
  target_scene = int(rng.integers(len(lengths)))

  objects, question, options, answer = build_scene(cfg, rng, qtype, frames=1)
  target = objects[-1]
  frames, relevant, scene_ids, cells = [], [], [], []
  for k, length in enumerate(lengths):
    if k == target_scene:
      image, mask = render(clutter_background(rng, cfg.size, cfg.clutter_density), objects, 1,
                           relevant=(len(objects) - 1,))
      shown = objects
    else:  # a filler scene that never repeats the question's named shape or colour
      m = int(rng.integers(cfg.num_distractors[0], cfg.num_distractors[1] + 1)) + 1
      shapes = [s for s in cfg.shapes if qtype != "static_color" or s != target.shape]
      colors = [c for c in cfg.colors if qtype != "static_shape" or c != target.colors[0]]
      attrs, _ = thin_objects(rng, cfg, [(s, [c]) for s, c in zip(fill(rng, [], shapes, m), fill(rng, [], colors, m))], 0)
      filler = place_static(rng, cfg, attrs)
      image, mask = render(clutter_background(rng, cfg.size, cfg.clutter_density), filler, 1)
      shown = filler
    cells.append(np.repeat(cell_labels(shown, 1, cfg.size, cfg.cell, cfg.colors, cfg.shapes), length, axis=0))
    frames.append(np.repeat(image, length, axis=0))
    relevant.append(np.repeat(mask, length, axis=0))
    scene_ids += [k] * length
  return dict(frames=np.concatenate(frames), question=question, options=options, answer=answer,
              question_type=qtype, relevant=np.concatenate(relevant), scene_ids=np.asarray(scene_ids, np.int32),
              cells=np.concatenate(cells))
