"""The embedded world: determinism, question/option validity, balance, relevant masks, pseudo-videos, oracle."""
from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

from score_jax.world.clutter import clutter_background
from score_jax.world.oracle import oracle_scores, relevant_token_mask
from score_jax.world.palette import COLORS, OUTLINE_RGB, SHAPES
from score_jax.world.png import encode_png
from score_jax.world.pseudo_video import generate_pseudo_video_sample, segment_lengths
from score_jax.world.scene import linear_path
from score_jax.world.generator import (QUESTION_TYPES, WorldConfig, build_scene, generate_video_sample, main,
                                  vocabulary)

CFG = WorldConfig()
N_PER_TYPE = 25


def _colors_of(frame: np.ndarray, mask: np.ndarray) -> set[tuple[int, ...]]:
  return {tuple(int(v) for v in c) for c in frame[mask]}


def _pixels_of(frame: np.ndarray, rgb) -> int:
  return int((frame == np.asarray(rgb, np.uint8)).all(-1).sum())


@functools.lru_cache(maxsize=None)
def _samples(qtype: str) -> tuple[dict, ...]:
  rng = np.random.default_rng(hash(qtype) % 2**32)
  return tuple(generate_video_sample(CFG, rng, qtype) for _ in range(N_PER_TYPE))


@functools.lru_cache(maxsize=None)
def _mixed(n: int = 480) -> tuple[dict, ...]:
  rng = np.random.default_rng(123)
  return tuple(generate_video_sample(CFG, rng) for _ in range(n))


def test_deterministic_given_rng():
  a = generate_video_sample(CFG, np.random.default_rng(7))
  b = generate_video_sample(CFG, np.random.default_rng(7))
  c = generate_video_sample(CFG, np.random.default_rng(8))
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  assert not np.array_equal(a["frames"], c["frames"])


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_sample_format(qtype):
  for s in _samples(qtype):
    assert s["frames"].shape == (8, 64, 64, 3) and s["frames"].dtype == np.uint8
    assert s["relevant"].shape == (8, 64, 64) and s["relevant"].dtype == bool
    assert s["question_type"] == qtype
    assert s["question"] == s["question"].lower() and all(w.isalpha() for w in s["question"].split())
    opts = s["options"]
    assert len(opts) == 4 and len(set(opts)) == 4
    assert 0 <= s["answer"] < 4
    pool = SHAPES if qtype.endswith("_shape") else tuple(COLORS)
    assert set(opts) <= set(pool)


def test_vocabulary_covers_questions_and_options():
  vocab = set(vocabulary())
  assert vocab == set(vocabulary(CFG)) and all(w.isalpha() and w.islower() for w in vocab)
  seen = set()
  for s in _mixed():
    seen |= set(s["question"].split()) | set(s["options"])
  rng = np.random.default_rng(0)
  for _ in range(40):
    s = generate_pseudo_video_sample(CFG, rng)
    seen |= set(s["question"].split()) | set(s["options"])
  assert seen <= vocab
  assert set(COLORS) | set(SHAPES) <= vocab


def test_answer_positions_and_types_balanced():
  samples = _mixed()
  n = len(samples)
  pos = collections.Counter(s["answer"] for s in samples)
  for k in range(4):  # expected n/4 = 120, sd ~9.5
    assert abs(pos[k] - n / 4) < 40, pos
  types = collections.Counter(s["question_type"] for s in samples)
  assert set(types) == set(QUESTION_TYPES)
  for q in QUESTION_TYPES:  # expected 80, sd ~8
    assert abs(types[q] - n / len(QUESTION_TYPES)) < 35, types


def test_answer_not_guessable_from_colour_statistics():
  """Picking the option colour with the most (or fewest) pixels in the last frame is near chance."""
  most = fewest = total = 0
  for s in _mixed():
    if s["question_type"].endswith("_shape"):
      continue
    last = s["frames"][-1]
    counts = [_pixels_of(last, COLORS[o]) for o in s["options"]]
    assert min(counts) > 0, (s["question_type"], s["options"], counts)  # every option colour is on screen
    most += int(np.argmax(counts)) == s["answer"]
    fewest += int(np.argmin(counts)) == s["answer"]
    total += 1
  assert most / total < 0.4 and fewest / total < 0.4, (most / total, fewest / total)


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_distractors_carry_the_wrong_options(qtype):
  rng = np.random.default_rng(3)
  for _ in range(20):
    objects, question, options, answer = build_scene(CFG, rng, qtype)
    target, distractors = objects[-1], objects[:-1]
    wrong = [o for k, o in enumerate(options) if k != answer]
    if qtype.endswith("_shape"):
      assert options[answer] == target.shape
      assert set(wrong) <= {d.shape for d in distractors}
    else:
      assert options[answer] == target.colors[-1]
      assert set(wrong) <= {d.colors[-1] for d in distractors}
    if qtype == "static_color":  # the named shape is unique
      assert question.split()[-1] == target.shape and target.shape not in {d.shape for d in distractors}
    if qtype == "static_shape":  # the named colour is unique
      assert question.split()[-1] == target.colors[0] and target.colors[0] not in {d.colors[0] for d in distractors}


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_relevant_mask_is_the_target(qtype):
  for s in _samples(qtype):
    frames, rel = s["frames"], s["relevant"]
    assert rel.any()
    t = int(np.flatnonzero(rel.any((1, 2)))[-1])
    colors = _colors_of(frames[t], rel[t])
    assert tuple(OUTLINE_RGB) in colors and len(colors) == 2, colors  # outline + one pure fill colour
    fill = (colors - {tuple(OUTLINE_RGB)}).pop()
    assert fill in {tuple(v) for v in COLORS.values()}
    if not qtype.endswith("_shape"):
      assert fill == COLORS[s["options"][s["answer"]]]
    if qtype == "static_shape":
      assert fill == COLORS[s["question"].split()[-1]]
    # Everything outside the target is static.
    changed = (frames != frames[:1]).any(-1)
    assert not (changed & ~(rel | rel[:1])).any()


def test_moving_target_moves_and_others_stay():
  for qtype in ("moving_color", "moving_shape"):
    for s in _samples(qtype):
      rel = s["relevant"]
      sizes = rel.sum((1, 2))
      assert (sizes > 0).all() and (sizes == sizes[0]).all()  # whole object visible every frame
      assert any(not np.array_equal(rel[0], rel[t]) for t in range(1, 8))
      assert (s["frames"][1:] != s["frames"][:-1]).any()


def test_linear_path():
  rng = np.random.default_rng(0)
  directions = set()
  for _ in range(200):
    p = linear_path(rng, 8, 14, 64, (3, 6))
    step = np.diff(p)
    assert p.min() >= 0 and p.max() <= 50
    assert (step == step[0]).all() and 3 <= abs(step[0]) <= 6
    directions.add(int(np.sign(step[0])))
  assert directions == {-1, 1}
  assert np.abs(np.diff(linear_path(rng, 8, 14, 30, (3, 6)))).max() == 2  # slowed down to stay in frame


@pytest.mark.parametrize("qtype", ["static_color", "static_shape", "change_color"])
def test_static_targets_do_not_move(qtype):
  for s in _samples(qtype):
    rel = s["relevant"]
    assert all(np.array_equal(rel[0], rel[t]) for t in range(8))
    still = qtype != "change_color"
    assert still == all(np.array_equal(s["frames"][0], s["frames"][t]) for t in range(8))


def test_appearing_target_and_its_place_before_it_appears_are_relevant():
  for s in _samples("appear_color"):
    frames, rel = s["frames"], s["relevant"]
    changed = [not np.array_equal(frames[0], frames[t]) for t in range(8)]
    t0 = changed.index(True)
    assert 0 < t0 < 7 and all(changed[t0:])
    assert not (frames[t0 - 1] != frames[t0]).any(-1)[~rel[t0]].any()  # it appears inside the mask
    # The oracle's mask covers the empty place in the frames before, where the event shows.
    assert all(np.array_equal(rel[0], rel[t]) for t in range(8))
    assert tuple(OUTLINE_RGB) not in _colors_of(frames[0], rel[0])


def test_colour_change_event():
  for s in _samples("change_color"):
    rel = s["relevant"]
    first = _colors_of(s["frames"][0], rel[0]) - {tuple(OUTLINE_RGB)}
    last = _colors_of(s["frames"][-1], rel[-1]) - {tuple(OUTLINE_RGB)}
    assert first != last
    old = [name for name, rgb in COLORS.items() if tuple(rgb) in first]
    assert old and old[0] in s["options"] and s["options"].index(old[0]) != s["answer"]


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_target_lives_in_one_or_two_tokens_per_frame(qtype):
  for s in _samples(qtype):
    tokens = relevant_token_mask(s["relevant"]).sum(-1)
    visible = s["relevant"].any((1, 2))
    if qtype.startswith("moving"):
      assert ((tokens >= 1) & (tokens <= 2)).all(), tokens
    else:
      assert (tokens[visible] == 1).all(), tokens


def test_clutter_avoids_palette_colours():
  rng = np.random.default_rng(0)
  palette = np.array(list(COLORS.values()), np.float32)
  for _ in range(20):
    bg = clutter_background(rng, 64, 1.5).reshape(-1, 1, 3).astype(np.float32)
    assert np.sqrt(((bg - palette[None]) ** 2).sum(-1)).min() > 50
    assert bg.std() > 10  # busy, not flat


# Pseudo-videos.

def test_repeat_single_image():
  rng = np.random.default_rng(0)
  for _ in range(10):
    s = generate_pseudo_video_sample(CFG, rng, "repeat_single_image")
    assert (s["frames"] == s["frames"][:1]).all() and (s["scene_ids"] == 0).all()
    assert (s["relevant"] == s["relevant"][:1]).all() and s["relevant"].any()


def test_slideshow_cuts():
  rng = np.random.default_rng(1)
  scene_counts = collections.Counter()
  for _ in range(30):
    s = generate_pseudo_video_sample(CFG, rng, "slideshow")
    frames, ids, rel = s["frames"].astype(np.int16), s["scene_ids"], s["relevant"]
    assert s["question_type"] in ("static_color", "static_shape")
    diff = np.abs(frames[1:] - frames[:-1]).mean((1, 2, 3))
    cut = ids[1:] != ids[:-1]
    n_scenes = int(ids[-1]) + 1
    scene_counts[n_scenes] += 1
    assert cut.sum() == n_scenes - 1 and list(ids) == sorted(ids)
    assert (diff[~cut] == 0).all() and (diff[cut] > 10).all(), diff
    assert min(collections.Counter(ids.tolist()).values()) >= 2
    on = rel.any((1, 2))
    assert on.any() and len(set(ids[on].tolist())) == 1 and on[ids == ids[on][0]].all()
    if s["question_type"] == "static_shape":  # the named colour appears only on the target
      named = COLORS[s["question"].split()[-1]]
      hits = (s["frames"] == np.asarray(named, np.uint8)).all(-1)
      assert hits.any() and not (hits & ~rel).any()
  assert set(scene_counts) == {2, 3}


def test_segment_lengths():
  rng = np.random.default_rng(0)
  for n in (1, 2, 3):
    for _ in range(20):
      lengths = segment_lengths(rng, 8, n)
      assert len(lengths) == n and sum(lengths) == 8 and min(lengths) >= 2
  assert segment_lengths(rng, 4, 3) in ([2, 2],)


def test_bad_mode_and_config():
  with pytest.raises(ValueError):
    generate_pseudo_video_sample(CFG, np.random.default_rng(0), "movie")
  with pytest.raises(ValueError):
    WorldConfig(colors=("red", "green", "blue"))
  with pytest.raises(ValueError):
    WorldConfig(object_size=(8, 20))


# Oracle.

def test_relevant_token_mask_layout():
  rel = np.zeros((2, 64, 64), bool)
  rel[0, 17, 33] = True  # cell row 1, col 2 -> token 6
  rel[1, 63, 0] = True  # cell row 3, col 0 -> token 12
  m = relevant_token_mask(rel)
  assert m.shape == (2, 16)
  assert np.flatnonzero(m[0]).tolist() == [6] and np.flatnonzero(m[1]).tolist() == [12]
  assert relevant_token_mask(rel[None]).shape == (1, 2, 16)


def test_oracle_scores_fraction():
  rel = np.zeros((1, 64, 64), bool)
  rel[0, :16, :16] = True
  rel[0, 16:24, 48:64] = True  # half of token 7
  s = oracle_scores(rel)
  assert s.dtype == np.float32
  np.testing.assert_allclose(s[0, [0, 7]], [1.0, 0.5])
  assert s[0].sum() == pytest.approx(1.5)
  np.testing.assert_array_equal(s > 0, relevant_token_mask(rel))
  with pytest.raises(ValueError):
    oracle_scores(np.zeros((1, 60, 60), bool))


# Preview.

def test_png_and_preview(tmp_path, capsys):
  png = encode_png(np.zeros((3, 5, 3), np.uint8))
  assert png.startswith(b"\x89PNG") and b"IHDR" in png and png.endswith(b"IEND\xaeB`\x82")
  out = tmp_path / "w.png"
  main(["--out", str(out), "--pseudo", "1", "--scale", "1"])
  assert out.read_bytes().startswith(b"\x89PNG")
  assert "what" in capsys.readouterr().out
