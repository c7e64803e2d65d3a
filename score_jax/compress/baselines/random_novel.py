"""Random order among new tokens: frame 0 and every place from its first change on, drawn in random order;
places that stayed still since frame 0 only after them (`surprise.still_places` at `STILL_COSINE`).

The training-free counterpart of CaCoVID's `cacovid_eval.dedup` ranking (the policy's scores replaced by
random ones) and a simple form of the temporal pruning of DyCoke (tokens like their place in the previous
frame are dropped); it measures what a policy adds to the dedup rule (BUILD_NOTES.md, thirteenth session).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.compress.baselines.registry import register_selector
from score_jax.compress.selection import topk_indices
from score_jax.compress.surprise import STILL_COSINE, still_places


@register_selector("random_novel")
def random_novel_select(visual, k: int, *, key, extras=None):
  del extras
  b, t, p, _ = visual.shape
  order = jax.random.uniform(key, (b, t * p)) - still_places(visual, STILL_COSINE).reshape(b, t * p)
  return topk_indices(order.astype(jnp.float32), k)
