"""Prompt building: chat template, split at the video placeholder, option letters, batching."""
import re

import numpy as np
import pytest

from score_jax.models import prompt
from score_jax.models.word_tokenizer import build_word_tokenizer

WORDS = ["what", "color", "is", "moving", "shape", "red", "blue", "green", "pink"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("tok"))
  build_word_tokenizer(WORDS).save_pretrained(folder)
  return prompt.PromptEncoder.from_folder(folder)


def test_render_follows_llava_ov_template(encoder):
  text = encoder.render("hello")
  assert text == "<|im_start|>user <video>\nhello<|im_end|><|im_start|>assistant\n"


def test_prefix_and_suffix_around_video(encoder):
  pre, suf = encoder.encode("what color is the moving shape?", ["red", "blue", "green", "pink"])
  tok = encoder.tokenizer
  assert tok.convert_ids_to_tokens(pre) == ["<|im_start|>", "user"]
  words = tok.convert_ids_to_tokens(suf)
  assert words[:7] == ["what", "color", "is", "the", "moving", "shape", "?"]
  assert words[7:10] == ["A", ".", "red"] and words[-3:] == ["<|im_end|>", "<|im_start|>", "assistant"]
  assert "<unk>" not in words
  assert tok.convert_tokens_to_ids("<video>") not in pre + suf


def test_option_letters_are_single_tokens(encoder):
  ids = encoder.option_token_ids(4)
  assert encoder.tokenizer.convert_ids_to_tokens(ids.tolist()) == ["A", "B", "C", "D"]


def test_batch_is_right_padded(encoder):
  pre, suf, lens = encoder.encode_batch(["what color", "what shape is moving"],
                                        [["red", "blue"], ["red", "blue", "green"]], 40)
  assert pre.shape == (2, 2) and suf.shape == (2, 40)
  assert lens[1] - lens[0] == 2 + 3  # two more question words, one more option line (letter . word)
  assert (suf[0, lens[0]:] == encoder.tokenizer.pad_token_id).all()
  single_pre, single_suf = encoder.encode("what color", ["red", "blue"])
  np.testing.assert_array_equal(suf[0, :lens[0]], single_suf)


def test_errors_name_the_problem(encoder, tmp_path):
  with pytest.raises(prompt.PromptError, match="needs 2 to 10 options, got 1"):
    encoder.encode("what", ["red"])
  with pytest.raises(prompt.PromptError, match="suffix_len is 5"):
    encoder.encode_batch(["what color"], [["red", "blue"]], 5)
  bad = prompt.PromptEncoder(encoder.tokenizer, template="{{ messages[0]['content'][1]['text'] }}")
  with pytest.raises(prompt.PromptError, match="exactly one '<video>'"):
    bad.encode("what", ["red", "blue"])
  with pytest.raises(prompt.PromptError, match="does not exist"):
    prompt.PromptEncoder.from_folder(str(tmp_path / "nope"))


def test_option_word_format_is_cloze_and_scores_each_option_by_its_token(encoder):
  cloze = prompt.PromptEncoder(encoder.tokenizer, encoder.template, "option_word")
  tok = encoder.tokenizer
  _, suf = cloze.encode("what color is moving", ["red", "blue", "green", "pink"])
  words = tok.convert_ids_to_tokens(suf)
  assert "A" not in words and "red" not in words  # the options are not shown ...
  assert words[:4] == ["what", "color", "is", "moving"]  # ... the open-ended prompt is
  assert cloze.encode("what color is moving", None) == cloze.encode("what color is moving", ["red", "blue"])
  ids = cloze.option_word_ids([["red", "blue", "green", "pink"], ["pink", "red"]])
  assert tok.convert_ids_to_tokens(ids[0].tolist()) == ["red", "blue", "green", "pink"]
  assert tok.convert_ids_to_tokens(ids[1].tolist()) == ["pink", "red", "pink", "pink"]  # padded with the first
  assert encoder.option_word_ids([["red", "blue"]]) is None  # letters: the same ids for every sample
  with pytest.raises(prompt.PromptError, match="answer_format"):
    prompt.PromptEncoder(tok, encoder.template, "letters")


def test_folder_without_tokenizer_files_is_named(tmp_path):
  from score_jax.models.safetensors_io import save_safetensors
  folder = tmp_path / "weights_only"
  folder.mkdir()
  (folder / "config.json").write_text('{"model_type": "llava_onevision"}')
  save_safetensors({"x": np.zeros((2, 2), np.float32)}, str(folder / "model.safetensors"))
  with pytest.raises(prompt.PromptError, match=re.escape(str(folder)) + r"' has no tokenizer files \(tokenizer\.json, "
                     r"or vocab\.json\+merges\.txt, or tokenizer\.model\); copy them from the original checkpoint\."):
    prompt.PromptEncoder.from_folder(str(folder))
  (folder / "vocab.json").write_text("{}")
  with pytest.raises(prompt.PromptError, match=r"\(found vocab\.json without merges\.txt\); copy them"):
    prompt.load_tokenizer(str(folder))


def test_a_letter_never_shown_can_never_be_the_answer():
  """Sample 0 has 3 options (A-C) in a 5-letter batch; its LM puts almost all mass on "E"."""
  import jax.numpy as jnp
  from score_jax import evaluation
  from score_jax.models import prefill
  letters = jnp.array([10, 11, 12, 13, 14])
  logits = jnp.zeros((2, 20)).at[0, 14].set(9.0).at[0, 11].set(1.0).at[1, 14].set(9.0)
  logp = prefill.option_logprobs(logits, letters, jnp.array([3, 5]))
  assert [int(i) for i in jnp.argmax(logp, -1)] == [1, 4]
  assert bool(jnp.isneginf(logp[0, 3:]).all()) and bool(jnp.isfinite(logp[1]).all())
  assert "num_options" in evaluation.text_inputs({"prefix": 0, "suffix": 0, "suffix_len": 0, "num_options": 1})
