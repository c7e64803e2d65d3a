"""The generated world's held-out sets by name: which scenes, and whether they pass through H.264.

  clean          the world as the embedded model was trained on it (3-6 distractors)
  h264           the same videos after an H.264 round trip (`lossy_video`)
  crowded        12-15 distractors: 13-16 objects in the 16 cells of a frame (fewer when a moving
                 object's path takes cells), so that at 10% of the tokens (13 of 128) even a policy that
                 keeps the still scene once, objects first, cannot keep every object: it must know which
                 one the question names. The frozen model was never trained on such scenes (its
                 full-token accuracy on them is in every report)
  crowded_h264   the crowded videos after an H.264 round trip

Only held-out data; nothing here is in the world's version hash, so the embedded model is unchanged.
"""
from __future__ import annotations

import dataclasses

from score_jax.world.generator import WorldConfig

HELDOUT_SETS: tuple[str, ...] = ("clean", "h264", "crowded", "crowded_h264")
CROWDED_DISTRACTORS: tuple[int, int] = (12, 15)


def check_set(name: str) -> str:
  if name not in HELDOUT_SETS:
    raise ValueError(f"Unknown held-out set {name!r}; expected one of {HELDOUT_SETS}.")
  return name


def world_of(name: str, world: WorldConfig) -> WorldConfig:
  """The generator settings of held-out set `name`, starting from the training world `world`."""
  if check_set(name).startswith("crowded"):
    return dataclasses.replace(world, num_distractors=CROWDED_DISTRACTORS)
  return world


def is_lossy(name: str) -> bool:
  """Whether set `name` sends its videos through the H.264 round trip."""
  return check_set(name).endswith("h264")
