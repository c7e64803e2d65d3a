"""What a trained method hands to inference and evaluation."""
from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class KeepPolicy:
  """A trained keep policy.

  select(features, k) -> kept indices [B, k] (fixed budget, ascending);
  position_mode: the position ids the policy was trained with ("original" | "repacked");
  adaptive(features, n) -> (indices [B, k_max], valid [B, k_max]): the policy's own budget per
      video under its static cap (None for fixed-budget policies).
  """
  select: Callable
  position_mode: str = "original"
  adaptive: Callable | None = None


def as_keep_policy(p) -> KeepPolicy:
  """A plain `select(features, k)` function is a fixed-budget policy with original positions."""
  return p if isinstance(p, KeepPolicy) else KeepPolicy(p)
