"""Residual-magnitude heuristic: keep the tokens that changed most since the previous frame.

The training-free counterpart of SCORE's surprise signal (frame 0 is scored by its distance to the
video mean), in the spirit of DyCoke/FastVID temporal-redundancy pruning.
"""
from __future__ import annotations

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.selection import topk_indices
from score_jax.compress.surprise import residual_magnitude_scores


@register_selector("residual")
def residual_select(visual, k: int, *, key=None, extras=None):
  del key, extras
  return topk_indices(residual_magnitude_scores(visual), k)
