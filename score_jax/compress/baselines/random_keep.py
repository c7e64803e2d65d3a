"""Random pruning: k tokens drawn uniformly without replacement (average over several seeds).

Reference: the "random" baseline of VidCom2 / VTC-Bench; at 25% on LLaVA-OV it holds ~95% of vanilla.
"""
from __future__ import annotations

import jax

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.selection import topk_indices


@register_selector("random")
def random_select(visual, k: int, *, key, extras=None):
  del extras
  b, t, p, _ = visual.shape
  return topk_indices(jax.random.uniform(key, (b, t * p)), k)
