"""What a compressor hands the frozen LLM: k visual tokens, the position id each takes, and validity.

    Compressed(tokens [B, k, d], positions [B, k] int32, valid [B, k] bool, span)

k is static. `positions` are the ids prefill's "original" position mode gives the tokens (offset by the
prefix length): a kept token's index in the full [B, N] video, a merged token the index of the token it
stands at. `span` (static) is how many position ids the video occupies: the image_newline token after
the video takes position `prefix + span` and the text after it continues from there (N for tokens of an
N-token video; a pooler that makes a new, shorter video gives its own length). In "repacked" mode the
positions are ignored and the valid tokens numbered contiguously. Invalid slots are masked out of
attention (a compressor that keeps fewer than k tokens pads with them).

Selection is the special case that gathers: `gather(visual, idx)` = (visual[idx], idx, valid, N).
A compressor is `compress(visual [B, T, P, d], k, *, key, extras) -> Compressed`; `from_selector`
wraps a `select(visual, k, *, key, extras) -> indices [B, k]` selector into one.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Compressed:
  tokens: jnp.ndarray     # [B, k, d]
  positions: jnp.ndarray  # [B, k] int32: index in the full video of the position each token takes
  valid: jnp.ndarray      # [B, k] bool
  span: int = struct.field(pytree_node=False, default=0)  # position ids the video occupies (N)

  @property
  def k(self) -> int:
    return self.tokens.shape[1]


def _flat(visual: jnp.ndarray) -> jnp.ndarray:
  if visual.ndim not in (3, 4):
    raise ValueError(f"visual tokens must be [B, N, d] or [B, T, P, d]; got shape {visual.shape}.")
  return visual.reshape(visual.shape[0], -1, visual.shape[-1])


def gather(visual: jnp.ndarray, indices: jnp.ndarray, valid: jnp.ndarray | None = None) -> Compressed:
  """Selection: the tokens at `indices` [B, k] of `visual` [B, N, d] (or [B, T, P, d]), at their own positions."""
  flat = _flat(visual)
  if indices.ndim != 2 or indices.shape[0] != flat.shape[0]:
    raise ValueError(f"kept indices must be [B, k] with B={flat.shape[0]}; got shape {indices.shape}.")
  indices = indices.astype(jnp.int32)
  tokens = jnp.take_along_axis(flat, indices[..., None], axis=1)
  valid = jnp.ones(indices.shape, bool) if valid is None else valid.astype(bool)
  return Compressed(tokens, indices, valid, flat.shape[1])


def full(visual: jnp.ndarray) -> Compressed:
  """Every token (the uncompressed model)."""
  flat = _flat(visual)
  b, n = flat.shape[:2]
  return gather(flat, jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n)))


def new_video(tokens: jnp.ndarray) -> Compressed:
  """Tokens [B, k, d] that replace the video (a pooler): positions 0..k-1, span k."""
  b, k = tokens.shape[:2]
  return Compressed(tokens, jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (b, k)), jnp.ones((b, k), bool), k)


def as_compressed(out, visual: jnp.ndarray) -> Compressed:
  """A selector's or policy's output (indices [B, k], (indices, valid), or a Compressed) as a Compressed."""
  if isinstance(out, Compressed):
    return out
  if isinstance(out, tuple):
    return gather(visual, *out)
  return gather(visual, out)


def from_selector(select: Callable) -> Callable:
  """`compress(visual, k, *, key=None, extras=None) -> Compressed` that gathers what `select` keeps."""
  def compress(visual, k: int, *, key=None, extras=None) -> Compressed:
    return gather(visual, select(visual, k, key=key, extras=extras))
  compress.selector = select
  return compress


def indices_valid(indices: jnp.ndarray, n: int) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`mask_to_indices` output (tail padded with n) -> (indices with padding set to 0, valid)."""
  valid = indices < n
  return jnp.where(valid, indices, 0).astype(jnp.int32), valid

