"""Oracle: keep the tokens that cover the objects the answer depends on (from the generator's masks).

Not a method: an upper reference that shows the benchmark is answerable at a given budget. Ties
(e.g. the many cells with no relevant object) are broken at random.
"""
from __future__ import annotations

import jax

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.selection import topk_indices


@register_selector("oracle")
def oracle_select(visual, k: int, *, key, extras):
  b = visual.shape[0]
  scores = extras["oracle_scores"].reshape(b, -1)
  return topk_indices(scores + 1e-3 * jax.random.uniform(key, scores.shape), k)
