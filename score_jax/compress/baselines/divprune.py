"""DivPrune: greedy Max-Min diversity (farthest-point sampling on cosine distance) over all tokens.

Seed: the token whose nearest neighbour is farthest (DivPrune's first step); then repeatedly add
the token whose cosine distance to the selected set is largest, with a running min-distance
vector (O(k * N * d) after the O(N^2 d) seed). Exact duplicates of a kept token have distance 0,
so they are picked only after every distinct content is covered.
Reference: Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal
Models", CVPR 2025.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from score_jax.compress.baselines.registry import register_selector


def _unit(x: jnp.ndarray) -> jnp.ndarray:
  x = x.astype(jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def divprune_indices(tokens: jnp.ndarray, k: int) -> jnp.ndarray:
  """Tokens [B, N, d] -> int32 [B, k] ascending indices of the greedy max-min diverse subset."""
  b, n, _ = tokens.shape
  if not 1 <= k <= n:
    raise ValueError(f"divprune: k={k} must be in [1, {n}].")
  u = _unit(tokens)

  def one(u):
    sim = u @ u.T
    nn_dist = 1.0 - jnp.max(jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, sim), axis=-1)
    first = jnp.argmax(nn_dist) if n > 1 else jnp.int32(0)
    taken = jnp.zeros((n,), bool).at[first].set(True)
    mind = 1.0 - u @ u[first]

    def body(_, carry):
      taken, mind = carry
      nxt = jnp.argmax(jnp.where(taken, -jnp.inf, mind))
      return taken.at[nxt].set(True), jnp.minimum(mind, 1.0 - u @ u[nxt])

    taken, _ = jax.lax.fori_loop(1, k, body, (taken, mind))
    return taken

  taken = jax.vmap(one)(u)
  key = jnp.where(taken, jnp.arange(n, dtype=jnp.int32), n)
  return jnp.sort(key, axis=-1)[:, :k]


@register_selector("divprune")
def divprune_select(visual, k: int, *, key=None, extras=None):
  del key, extras
  b, t, p, d = visual.shape
  return divprune_indices(visual.reshape(b, t * p, d), k)
