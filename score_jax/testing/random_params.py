"""Random parameters for tests without compiling an init (RNG kernels compile slowly on CPU)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def touch_all(mod, ids, x):
  """Uses every LLaVA-OneVision sub-module that the decoder path needs (text, visual, newline, head)."""
  e = jnp.concatenate([mod.embed(ids), x, jnp.broadcast_to(mod.newline(), x[:, :1].shape)], axis=1)
  return mod.logits(mod(e, jnp.broadcast_to(jnp.arange(e.shape[1]), e.shape[:2])))


def numpy_params(init_fn, *args, seed=0):
  """Parameter shapes from `jax.eval_shape(init_fn, key, *args)`, filled from numpy's RNG."""
  shapes = jax.eval_shape(init_fn, jax.random.key(0), *args)["params"]
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == "scale":
      return jnp.ones(s.shape, s.dtype)
    std = 1.0 / np.sqrt(s.shape[-2]) if name == "kernel" else 1.0 if name == "embedding" else 0.02
    return jnp.asarray(rng.normal(size=s.shape) * std, s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)
