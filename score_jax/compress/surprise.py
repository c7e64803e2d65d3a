"""Surprise-augmented token state: inter-frame residuals and their normalised magnitude.

For a video of T frames with P tokens per frame, the residual of token (t, p) is
x[t, p] - x[t-1, p]. Frame 0 has no predecessor; `first_frame` selects its residual:

  "zero": 0 (a static video then has an all-zero residual),
  "self": x[0] itself (as if the previous frame were all zeros),
  "mean": x[0] - mean_t x[t] (deviation from the video's per-position temporal mean).

All derived quantities are computed in float32.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

FIRST_FRAME_MODES = ("zero", "self", "mean")
STILL_COSINE = 0.95  # `still_places`: a place whose token stays this similar to the previous frame's is still


class SurpriseState(NamedTuple):
  tokens: jnp.ndarray  # [B, T, P, d] input tokens (unchanged dtype)
  residual: jnp.ndarray  # [B, T, P, d] float32 inter-frame residual
  residual_norm: jnp.ndarray  # [B, T, P] float32 L2 norm of the residual
  surprise: jnp.ndarray  # [B, T, P] residual_norm / (mean over the video + eps)


def temporal_residual(tokens: jnp.ndarray, first_frame: str = "zero") -> jnp.ndarray:
  """[B, T, P, d] -> float32 residual [B, T, P, d] (see module docstring for `first_frame`)."""
  if first_frame not in FIRST_FRAME_MODES:
    raise ValueError(f"first_frame must be one of {FIRST_FRAME_MODES}, got {first_frame!r}")
  x = tokens.astype(jnp.float32)
  rest = x[:, 1:] - x[:, :-1]
  if first_frame == "zero":
    first = jnp.zeros_like(x[:, :1])
  elif first_frame == "self":
    first = x[:, :1]
  else:
    first = x[:, :1] - jnp.mean(x, axis=1, keepdims=True)
  return jnp.concatenate([first, rest], axis=1)


def surprise_state(tokens: jnp.ndarray, first_frame: str = "zero",
                   eps: float = 1e-6) -> SurpriseState:
  """Residual, its per-token L2 norm and the per-video normalised norm ("surprise")."""
  residual = temporal_residual(tokens, first_frame)
  norm = jnp.linalg.norm(residual, axis=-1)
  video_mean = jnp.mean(norm, axis=(1, 2), keepdims=True)
  return SurpriseState(tokens, residual, norm, norm / (video_mean + eps))


def surprise_memory(surprise: jnp.ndarray) -> jnp.ndarray:
  """[B, T, P] -> [B, T, P]: the largest surprise of the same spatial token in frames 0..t.

  High for a token that changed at or before frame t, even once it is still again: the new state
  after an event (an object that appeared or changed) and the cells a moving object has crossed.
  """
  return jax.lax.cummax(surprise, axis=1)


def residual_magnitude_scores(tokens: jnp.ndarray) -> jnp.ndarray:
  """Heuristic keep scores [B, T*P]: residual L2 norm; frame 0 uses ||x[0] - temporal mean||."""
  norm = jnp.linalg.norm(temporal_residual(tokens, "mean"), axis=-1)
  return norm.reshape(norm.shape[0], -1)


def still_places(tokens: jnp.ndarray, threshold: float) -> jnp.ndarray:
  """bool [B, T, P]: tokens of [B, T, P, d] at a place that has not changed since frame 0, a change being a
  cosine similarity below `threshold` with the same place in the previous frame (frame 0: never still; a
  place that changed once stays changed, as in `surprise_memory`)."""
  x = tokens.astype(jnp.float32)
  norm = jnp.linalg.norm(x, axis=-1)
  cos = jnp.sum(x[:, 1:] * x[:, :-1], axis=-1) / jnp.maximum(norm[:, 1:] * norm[:, :-1], 1e-12)
  changed = jnp.cumsum((cos < threshold).astype(jnp.int32), axis=1) > 0  # [B, T - 1, P]
  return jnp.concatenate([jnp.zeros_like(changed[:, :1]), ~changed], axis=1)


def check_still_cosine(value: float, name: str) -> float:
  """`value` if it is a usable `still_places` threshold (a cosine in [0, 1]; 0: the rule off), else ValueError
  naming the setting `name`."""
  if not 0.0 <= value <= 1.0:
    raise ValueError(f"{name}={value} must be in [0, 1] (a cosine similarity; 0: off).")
  return value


def repeats_last(log_score: jnp.ndarray, repeated: jnp.ndarray) -> jnp.ndarray:
  """Ranking key [B, T, P] from log-scores (<= 0, e.g. a log-softmax over the video) and repeats (bool
  [B, T, P], `still_places`): every other token by its score, then the repeats in temporal order (earliest
  frame first, as a uniform fill), each frame's by score; one float32 key, |log_score| < 500 kept exact to
  ~0.002. Latest frame first loses 17-18 points at 25% on CaCoVID, all on the event types (held-out
  samples 4096-4607, BUILD_NOTES.md)."""
  t = log_score.shape[1]
  earliest_first = -1e3 * jnp.arange(t, dtype=jnp.float32)[:, None] - 1e4
  return jnp.where(repeated, earliest_first + jnp.clip(log_score, -500.0, 0.0), log_score)
