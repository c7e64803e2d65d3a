"""Surprise state: residuals, norms and normalisation on hand-computed tiny videos."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from score_jax.compress.surprise import residual_magnitude_scores, surprise_memory, surprise_state

# One video, 2 frames, 1 token, d = 2: x0 = [1, 2], x1 = [4, 6].
VIDEO = np.array([[[[1.0, 2.0]], [[4.0, 6.0]]]], np.float32)  # [1, 2, 1, 2]


def test_zero_first_frame():
  st = surprise_state(VIDEO, "zero")
  np.testing.assert_allclose(st.residual[0, :, 0], [[0, 0], [3, 4]])
  np.testing.assert_allclose(st.residual_norm[0, :, 0], [0.0, 5.0])
  # video mean norm = 2.5 -> surprise = [0, 5 / 2.5]
  np.testing.assert_allclose(st.surprise[0, :, 0], [0.0, 2.0], rtol=1e-5)
  assert st.tokens is VIDEO


def test_self_first_frame():
  st = surprise_state(VIDEO, "self")
  np.testing.assert_allclose(st.residual[0, 0, 0], [1, 2])
  np.testing.assert_allclose(st.residual_norm[0, :, 0], [math.sqrt(5), 5.0], rtol=1e-6)
  mean = (math.sqrt(5) + 5.0) / 2
  np.testing.assert_allclose(st.surprise[0, :, 0], [math.sqrt(5) / mean, 5 / mean], rtol=1e-5)


def test_mean_first_frame():
  # temporal mean = [2.5, 4] -> x0 - mean = [-1.5, -2], norm 2.5
  st = surprise_state(VIDEO, "mean")
  np.testing.assert_allclose(st.residual[0, 0, 0], [-1.5, -2.0])
  np.testing.assert_allclose(st.residual_norm[0, :, 0], [2.5, 5.0])


def test_residual_magnitude_scores():
  np.testing.assert_allclose(residual_magnitude_scores(VIDEO), [[2.5, 5.0]], rtol=1e-6)
  assert residual_magnitude_scores(np.zeros((2, 3, 4, 5), np.float32)).shape == (2, 12)


def test_per_video_normalisation_and_eps():
  # Second video is 10x the first: its surprise is identical (normalised per video).
  v = np.concatenate([VIDEO, 10 * VIDEO])
  st = surprise_state(v)
  np.testing.assert_allclose(st.surprise[0], st.surprise[1], rtol=1e-5)
  static = np.ones((1, 3, 2, 4), np.float32)
  assert np.all(np.asarray(surprise_state(static).surprise) == 0)  # eps: no 0/0


def test_bad_mode_and_jit():
  with pytest.raises(ValueError):
    surprise_state(VIDEO, "previous")
  st = jax.jit(surprise_state, static_argnums=1)(VIDEO, "self")
  np.testing.assert_allclose(st.residual_norm[0, :, 0], [math.sqrt(5), 5.0], rtol=1e-6)


def test_surprise_memory_is_a_running_max_over_frames():
  # [1, T=4, P=2]: position 0 changes at frame 1 and is still after; position 1 at frames 0 and 3.
  s = np.array([[[0.0, 1.0], [3.0, 0.0], [1.0, 0.0], [0.0, 5.0]]], np.float32)
  np.testing.assert_allclose(surprise_memory(s)[0], [[0, 1], [3, 1], [3, 1], [3, 5]])
  # an event at frame 2 of a 3-frame video: frames 0-1 remember nothing, frame 2 remembers it
  st = surprise_state(np.concatenate([VIDEO[:, :1], VIDEO], axis=1))  # x0, x0, x1
  np.testing.assert_allclose(surprise_memory(st.surprise)[0, :, 0], [0.0, 0.0, 3.0], rtol=1e-5)
