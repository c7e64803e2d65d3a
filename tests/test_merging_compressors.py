"""VisionZip's merged contextual tokens and FastVID's segments and merged anchors, on inputs whose rule
decides the answer; static shapes, one compile per budget k."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.baselines import get_compressor
from score_jax.compress.baselines import fastvid as fv

D = 8


@functools.lru_cache(maxsize=None)
def _jitted(name, k, extras_items=()):
  return jax.jit(lambda v: get_compressor(name)(v, k, key=None, extras=dict(extras_items)))


def _run(name, visual, k, **extras):
  out = _jitted(name, k, tuple(sorted(extras.items())))(jnp.asarray(visual, jnp.float32))
  return np.asarray(out.tokens), np.asarray(out.positions), np.asarray(out.valid)


def _np_attention_received(frame):
  logits = frame @ frame.T / np.sqrt(frame.shape[-1])
  w = np.exp(logits - logits.max(-1, keepdims=True))
  return (w / w.sum(-1, keepdims=True)).mean(0)


def _zip_frame(rng):
  """16 tokens: 2 dominant (strong along u, attended by every query), then clusters A (7) and B (7)."""
  u, a, b = np.eye(D)[0], np.eye(D)[1], np.eye(D)[2]
  frame = np.concatenate([0.3 * u + a + 0.02 * rng.normal(size=(7, D)), 0.3 * u + b + 0.02 * rng.normal(size=(7, D))])
  return np.insert(frame, [3, 9], 6.0 * u + 0.02 * rng.normal(size=(2, D)), axis=0)  # dominant at 3 and 10


def test_visionzip_merges_each_cluster_into_its_target():
  rng = np.random.default_rng(0)
  frame = _zip_frame(rng)
  assert set(np.argsort(-_np_attention_received(frame))[:2]) == {3, 10}
  # k = 4, dominant_frac 0.5: 2 dominant + 2 targets at non-dominant ranks 0 and 7 (step 14 // 2): tokens 0 and 8
  for merge in ("sum", "mean"):
    tokens, pos, valid = _run("visionzip", frame[None, None], 4, dominant_frac=0.5, visionzip_merge=merge)
    np.testing.assert_array_equal(pos[0], [0, 3, 8, 10])
    assert valid.all() and tokens.shape == (1, 4, D)
    cluster_a, cluster_b = [0, 1, 2, 4, 5, 6, 7], [8, 9, 11, 12, 13, 14, 15]
    for slot, target, members in ((0, 0, cluster_a), (2, 8, cluster_b)):
      others = [m for m in members if m != target]
      want = (frame[target] + frame[others].mean(0)) if merge == "sum" else frame[members].mean(0)
      np.testing.assert_allclose(tokens[0, slot], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tokens[0, [1, 3]], frame[[3, 10]], rtol=1e-6)  # dominant tokens as they are


def test_visionzip_dominant_tokens_are_the_most_attended_per_frame():
  rng = np.random.default_rng(1)
  video = rng.normal(size=(3, 16, D))
  tokens, pos, valid = _run("visionzip", video[None], 24)  # 8 per frame: int(8 * 54 / 64) = 6 dominant, 2 targets
  assert tokens.shape == (1, 24, D) and valid.all() and np.all(np.diff(pos[0]) > 0)
  for t in range(3):
    top = set(np.argsort(-_np_attention_received(video[t]))[:6] + 16 * t)
    kept = set(pos[0][(pos[0] // 16) == t])
    assert len(kept) == 8 and top <= kept
    dominant_slots = [i for i, q in enumerate(pos[0]) if q in top]
    np.testing.assert_allclose(tokens[0, dominant_slots], video.reshape(-1, D)[sorted(top)], rtol=1e-6)


def _scene(rng, centres, spread):
  """4 tokens per frame: two pairs around two centres; pair distance `spread` (A tighter than B)."""
  return np.stack([centres[0] + spread[0] * np.eye(D)[5], centres[0] - spread[0] * np.eye(D)[5],
                   centres[1] + spread[1] * np.eye(D)[6], centres[1] - spread[1] * np.eye(D)[6]])


def test_fastvid_segments_and_anchor_frames():
  x, y = np.eye(D)[0], np.eye(D)[1]
  video = np.stack([np.tile(x, (4, 1))] * 3 + [np.tile(y, (4, 1))] * 3)[None]  # a scene cut after frame 2
  sim = fv.frame_similarity(jnp.asarray(video))
  np.testing.assert_allclose(np.asarray(sim[0]), [1, 1, 0, 1, 1], atol=1e-6)
  starts = np.asarray(fv.segment_starts(sim, c=1, tau=0.9))
  np.testing.assert_array_equal(starts[0], [1, 0, 0, 1, 0, 0])
  assert np.asarray(fv.segment_starts(sim, c=8, tau=0.9)).all()  # c - 1 >= T - 1 transitions: every frame
  seg, anchor = fv.anchor_frames(jnp.asarray(starts), p=2)
  np.testing.assert_array_equal(np.asarray(seg[0]), [0, 0, 0, 1, 1, 1])
  np.testing.assert_array_equal(np.asarray(anchor[0]), [1, 0, 1, 1, 0, 1])  # every 2nd back from each last frame
  q = fv.anchor_quotas(seg, anchor, np.ones(6, np.int32), np.full(6, 4))
  np.testing.assert_array_equal(np.asarray(q[0]), [2, 0, 1, 2, 0, 1])  # 3 per segment, the remainder first


def test_fastvid_merges_a_static_segment_into_last_frame_anchors():
  rng = np.random.default_rng(2)
  a, b = 2 * np.eye(D)[1], 2 * np.eye(D)[2]
  frame = _scene(rng, (a, b), (0.05, 0.2))
  video = np.stack([frame, frame])[None]  # static: one segment, its last frame (1) the anchor frame (p = 4)
  kw = dict(fastvid_c=1, fastvid_d=1.0, fastvid_knn=2)  # no salient tokens: k = 2 context tokens
  tokens, pos, valid = _run("fastvid", video, 2, **kw)
  np.testing.assert_array_equal(pos[0], [4, 6])  # the density peak of each pair in frame 1
  assert valid.all()
  for slot, pair in ((0, [0, 1]), (1, [2, 3])):
    members = np.concatenate([frame[pair], frame[pair]])  # both frames' copies join the frame-1 anchor
    want = 0.6 * frame[pair[0]] + 0.4 * members.mean(0)  # w = max(1 / (4 + 1), beta = 0.6)
    np.testing.assert_allclose(tokens[0, slot], want, rtol=1e-5, atol=1e-6)
  # a scene cut: frame 0 shows another scene, so each frame is a segment with its own anchor and members
  other = _scene(rng, (2 * np.eye(D)[3], 2 * np.eye(D)[4]), (0.05, 0.2))
  tokens, pos, valid = _run("fastvid", np.stack([other, frame])[None], 2, **kw)
  np.testing.assert_array_equal(pos[0], [0, 4])
  np.testing.assert_allclose(tokens[0, 1], 0.6 * frame[0] + 0.4 * frame.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(tokens[0, 0], 0.6 * other[0] + 0.4 * other.mean(0), rtol=1e-5, atol=1e-6)


def test_fastvid_salient_tokens_are_the_most_attended_and_unmerged():
  rng = np.random.default_rng(3)
  video = rng.normal(size=(4, 16, D))
  tokens, pos, valid = _run("fastvid", video[None], 20)  # 5 per frame: 3 salient + int(5 * 0.4) = 2 context
  assert tokens.shape == (1, 20, D) and valid.all() and np.all(np.diff(pos[0]) > 0)
  probe = np.asarray(fv.probe_attention(jnp.asarray(video[None], jnp.float32)))[0]
  for t in range(4):
    top = np.sort(np.argsort(-probe[t])[:3]) + 16 * t
    slots = np.searchsorted(pos[0], top)
    np.testing.assert_array_equal(pos[0][slots], top)
    np.testing.assert_allclose(tokens[0, slots], video.reshape(-1, D)[top], rtol=1e-6)


def test_static_shapes_compile_once_per_k():
  rng = np.random.default_rng(4)
  for name in ("visionzip", "fastvid"):
    fn = jax.jit(lambda v, k, name=name: get_compressor(name)(v, k), static_argnums=1)
    for seed in range(2):
      out = fn(jnp.asarray(rng.normal(size=(2, 4, 16, D)), jnp.float32), 7)
      assert out.tokens.shape == (2, 7, D) and out.positions.shape == out.valid.shape == (2, 7)
      assert out.span == 64 and out.positions.dtype == jnp.int32
    assert fn._cache_size() == 1  # pylint: disable=protected-access
    fn(jnp.zeros((2, 4, 16, D)), 9)
    assert fn._cache_size() == 2  # pylint: disable=protected-access
