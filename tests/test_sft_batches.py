"""Supervised batches of the embedded base model: targets, option positions, token-subset masks."""
import numpy as np
import pytest

from score_jax.world import generator as world
from score_jax.embedded import sft_batches
from score_jax.embedded.world_text import WORLD, WorldText


@pytest.fixture(scope="module")
def samples():
  rng = np.random.default_rng(3)
  return [world.generate_video_sample(WORLD, rng) for _ in range(6)]


def test_curriculum_masks_keep_relevant_and_fade_in_objects():
  relevant = np.array([[1.0, 0, 0, 0, 0, 0]])
  cells = np.full((1, 1, 6, 2), -1)
  cells[0, 0, [0, 1, 2]] = 2  # tokens 0..2 hold objects (token 0 is the target), 3..5 background
  rng = np.random.default_rng(0)
  none = sft_batches.curriculum_masks(rng, relevant, cells, 0.0)
  np.testing.assert_array_equal(none, [[True, False, False, False, False, False]])
  full = sft_batches.curriculum_masks(rng, relevant, cells, 1.0)
  assert full.all()
  # At rate r objects are kept with probability r and background with r^2.
  many_rel = np.zeros((4000, 6))
  many_cells = np.broadcast_to(cells, (4000, 1, 6, 2))
  half = sft_batches.curriculum_masks(rng, many_rel, many_cells, 0.5)
  assert abs(half[:, :3].mean() - 0.5) < 0.03 and abs(half[:, 3:].mean() - 0.25) < 0.03


def test_subset_masks_keep_relevant_tokens():
  rng = np.random.default_rng(1)
  relevant = (rng.random((200, 32)) < 0.1).astype(np.float32)
  masks = sft_batches.subset_masks(rng, relevant, 0.5, 0.02)
  assert masks[relevant > 0].all()
  partial_rows = ~masks.all(axis=1)
  assert 0.3 < partial_rows.mean() < 0.7  # about `fraction` of the rows see a subset


def test_sft_batch_targets(samples):
  text = WorldText.create()
  rng = np.random.default_rng(0)
  b = sft_batches.sft_batch(samples, text.prompts, text.suffix_len, rng, open_fraction=0.5,
                            subset_fraction=0.0, subset_min_rate=0.02, object_rate=0.0)
  tok = text.tokenizer
  letters = text.prompts.option_token_ids(4)
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
  # object_rate=0: only the target's tokens are visible.
  assert b["keep_valid"].sum(axis=1).max() <= 4 * WORLD.frames and b["keep_valid"].any(axis=1).all()
