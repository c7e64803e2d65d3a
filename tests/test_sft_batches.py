"""Supervised batches of the embedded base model: targets, option positions, views blind to the question."""
import dataclasses

import numpy as np
import pytest

from score_jax.world import generator as world, pseudo_video
from score_jax.world.oracle import relevant_token_mask
from score_jax.embedded import base_model, sft_batches
from score_jax.embedded.world_text import WORLD, WorldText


class NoOracle(dict):
  """A sample that fails the test if anyone reads which pixels the question is about."""

  def __getitem__(self, key):
    if key == "relevant":
      raise AssertionError("the base model's training batch read the question's target ('relevant')")
    return super().__getitem__(key)


@pytest.fixture(scope="module")
def samples():
  rng = np.random.default_rng(3)
  return [NoOracle(world.generate_video_sample(WORLD, rng)) for _ in range(6)]


def test_view_masks_are_full_random_subsets_or_strided_frames():
  rng = np.random.default_rng(0)
  t, p = 8, 16
  masks = sft_batches.view_masks(rng, 3000, t, p, subset_fraction=0.4, frame_fraction=0.2, min_rate=0.05)
  full = masks.all(axis=1)
  per_frame = masks.reshape(-1, t, p)
  whole_frames = (per_frame.all(axis=2) | ~per_frame.any(axis=2)).all(axis=1) & ~full
  strides = [np.flatnonzero(per_frame[i].all(axis=1)) for i in np.flatnonzero(whole_frames)]
  assert all(len(set(np.diff(f))) == 1 and np.diff(f)[0] in sft_batches.FRAME_STRIDES for f in strides)
  assert abs(full.mean() - 0.4) < 0.04 and abs(whole_frames.mean() - 0.2) < 0.04
  subset = ~full & ~whole_frames
  assert abs(subset.mean() - 0.4) < 0.04
  # Subsets are uniform over positions (no token is favoured), at rates over [min_rate, 1].
  rates = masks[subset].mean(axis=0)
  assert rates.std() < 0.04 and abs(rates.mean() - 0.525) < 0.04


def test_object_masks_keep_or_drop_whole_objects_blind_to_the_question(samples):
  rng = np.random.default_rng(1)
  cells = np.stack([s["cells"] for s in samples] * 50).astype(np.int32)  # [300, T, P, 2]
  masks = sft_batches.object_masks(rng, cells, background_max=0.1)
  flat = cells.reshape(len(cells), -1, 2)
  is_object = flat[..., 0] >= 0
  for row, keep in zip(flat, masks):
    pairs = {tuple(p) for p in row[row[:, 0] >= 0]}
    for pair in pairs:  # every token of one colour-shape pair shares its fate, in every frame
      same = (row[:, 0] == pair[0]) & (row[:, 1] == pair[1])
      assert keep[same].all() or not keep[same].any()
  kept_objects = np.asarray([m[o].mean() for m, o in zip(masks, is_object)])
  assert 0.35 < kept_objects.mean() < 0.65 and kept_objects.min() == 0.0 and kept_objects.max() == 1.0
  assert masks[~is_object].mean() < 0.08  # background at rates drawn from [0, 0.1]
  # The target is dropped as often as any other object: the view does not know which one it is.
  targets = np.stack([relevant_token_mask(dict.__getitem__(s, "relevant")).reshape(-1) for s in samples] * 50)
  target_kept = (masks & targets).any(axis=1)
  assert 0.35 < target_kept.mean() < 0.65


def test_sft_batch_targets_and_it_never_reads_the_target(samples):
  text = WorldText.create()
  rng = np.random.default_rng(0)
  b = sft_batches.sft_batch(samples, text.prompts, text.suffix_len, rng, open_fraction=0.5,
                            subset_fraction=0.0, subset_min_rate=0.05)
  tok = text.tokenizer
  letters = text.prompts.option_token_ids(4)
  assert b["option_valid"].any() and not b["option_valid"].all()
  for i, s in enumerate(samples):
    answer_word = tok.convert_tokens_to_ids(s["options"][s["answer"]])
    if b["option_valid"][i]:  # multiple choice: the letter, and yes/no at each option word
      assert b["target"][i] == letters[s["answer"]]
      words = b["suffix"][i, b["option_pos"][i]]
      assert [tok.convert_ids_to_tokens(int(w)) for w in words] == s["options"]
      assert [tok.convert_ids_to_tokens(int(t)) for t in b["option_target"][i]] == [
          "yes" if k == s["answer"] else "no" for k in range(4)]
    else:  # open-ended: the answer word itself
      assert b["target"][i] == answer_word
  assert b["keep_valid"].all() and "relevant" not in b


def test_the_build_batches_never_read_the_target(samples):
  """One step's worth of the build's data path (scene curriculum, H.264, views) on samples that
  refuse `relevant`: the build cannot favour selectors that keep the question's object."""
  settings = base_model.BaseModelSettings(batch_size=4, lossy_fraction=1.0, subset_fraction=0.5,
                                          frame_fraction=0.5)
  rng = np.random.default_rng(1)
  drawn = base_model.training_samples(rng, settings, WORLD, base_model.LossySettings(fraction=1.0))
  assert not np.array_equal(drawn[0]["frames"], world.generate_video_sample(WORLD, np.random.default_rng(9))["frames"])
  text = WorldText.create()
  b = sft_batches.sft_batch([NoOracle(s) for s in drawn], text.prompts, text.suffix_len, rng, 0.5, 0.5, 0.05, 0.5,
                                object_fraction=0.5)
  assert b["frames"].shape[0] == 4 and not b["keep_valid"].all()


def test_scene_curriculum_thins_distractors_without_touching_the_full_world():
  rng = np.random.default_rng(5)
  none = dataclasses.replace(WORLD, object_rate=0.0)
  for qtype in world.QUESTION_TYPES:
    s = world.generate_video_sample(none, rng, qtype)
    objects = (s["cells"][..., 0] >= 0).sum(axis=1)
    assert objects.max() <= 2, (qtype, objects)  # the target alone (a mover may straddle two cells)
    assert s["relevant"].any()
  p = pseudo_video.generate_pseudo_video_sample(none, rng)
  assert (p["cells"][..., 0] >= 0).sum(axis=1).max() == 1
  # object_rate=1 draws nothing extra: the held-out world is the same sample for sample.
  a = world.generate_video_sample(WORLD, np.random.default_rng(7))
  b = world.generate_video_sample(dataclasses.replace(WORLD, object_rate=1.0), np.random.default_rng(7))
  np.testing.assert_array_equal(a["frames"], b["frames"])
  assert [base_model.object_rate(i, base_model.BaseModelSettings(steps=100)) for i in (0, 5, 25, 45, 99)] == [
      0.0, 0.0, 0.5, 1.0, 1.0]
  assert base_model.world_at(0.5, WORLD).clutter_density == pytest.approx(0.25 * WORLD.clutter_density)
  with pytest.raises(ValueError, match="object_rate"):
    dataclasses.replace(WORLD, object_rate=1.5)


def test_foreground_masks_show_every_object_and_background_at_rate_squared():
  cells = np.full((4000, 1, 6, 2), -1)
  cells[:, 0, [0, 1, 2]] = 2  # tokens 0..2 hold objects (any objects), 3..5 background
  rng = np.random.default_rng(0)
  assert (sft_batches.foreground_masks(rng, cells[:1], 0.0) == [[True] * 3 + [False] * 3]).all()
  half = sft_batches.foreground_masks(rng, cells, 0.5)
  assert half[:, :3].all() and abs(half[:, 3:].mean() - 0.25) < 0.03


def test_grounding_rows_name_a_random_object_of_the_scene_and_point_at_its_tokens(samples):
  text = WorldText.create()
  rng = np.random.default_rng(2)
  b = sft_batches.sft_batch(samples, text.prompts, text.suffix_len, rng, 0.0, 0.0, 0.05,
                            grounding_fraction=0.5, names=(WORLD.colors, WORLD.shapes))
  assert b["ground"].any() and not b["ground"].all()
  tok = text.tokenizer
  for i, s in enumerate(samples):
    if not b["ground"][i]:
      assert not b["ground_target"][i].any() and b["option_valid"][i]
      continue
    assert not b["option_valid"][i]  # open prompt, no options
    words = [tok.convert_ids_to_tokens(int(w)) for w in b["suffix"][i, :b["suffix_len"][i]]]
    named = [w for w in words if w in WORLD.colors or w in WORLD.shapes]
    cells = s["cells"].reshape(-1, 2)
    expected = np.ones(len(cells), bool)
    for w in named:  # "<colour> <shape>", "<shape>" or "<colour>": every token of what it names
      expected &= (cells[:, 0] == WORLD.colors.index(w)) if w in WORLD.colors else (cells[:, 1] == WORLD.shapes.index(w))
    assert 1 <= len(named) <= 2
    assert expected.any()
    np.testing.assert_array_equal(b["ground_target"][i], expected)


def test_distractor_cap_limits_objects_and_steps_up_after_the_hold():
  rng = np.random.default_rng(6)
  for cap in (0, 1, 2):
    capped = dataclasses.replace(WORLD, max_distractors=cap)
    for qtype in world.QUESTION_TYPES:
      s = world.generate_video_sample(capped, rng, qtype)
      still = [tuple(c) for c in s["cells"][0][s["cells"][0][:, 0] >= 0]]  # objects in frame 0 (a mover: <= 2 cells)
      assert len(still) <= cap + 2, (cap, qtype, still)
  uncapped = world.generate_video_sample(WORLD, np.random.default_rng(7), "static_color")
  assert (uncapped["cells"][0][:, 0] >= 0).sum() >= 4  # the world itself keeps 3-6 distractors
  s = base_model.BaseModelSettings(steps=1000, hold_fraction=0.1, distractor_step=100)
  caps = [base_model.distractor_cap(i, s) for i in (0, 99, 100, 199, 200, 599, 700)]
  assert caps == [0, 0, 1, 1, 2, 5, -1]
  long_first = base_model.BaseModelSettings(steps=1000, hold_fraction=0.1, distractor_step=100, distractor_first=300)
  caps = [base_model.distractor_cap(i, long_first) for i in (99, 100, 399, 400, 499, 500, 799, 800)]
  assert caps == [0, 1, 1, 2, 2, 3, 5, -1]  # one distractor for 300 steps, then one more every 100
  assert base_model.distractor_cap(50, base_model.BaseModelSettings()) == -1  # off by default
