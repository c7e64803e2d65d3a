"""The three answer readings (config.model.answer_reading): logits, option likelihood, generation + parsing."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from score_jax import config_checks, evaluation
from score_jax.embedded.batches import encode_text
from score_jax.frozen_llm import FrozenLLM
from score_jax.models import answer_reading as ar
from score_jax.models import generate, prefill
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.hf_loading import llava_dummy_inputs
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.prompt import PromptEncoder
from score_jax.models.word_tokenizer import build_word_tokenizer

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                              image_size=16, patch_size=4),
    text=Qwen2Config(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0),
    video_token_id=95, image_token_id=94)
WORDS = ["cup", "phone", "apple", "book", "An", "What", "is", "he", "holding", "held", "thing", "red"]
QUESTIONS = ["What is he holding?", "What thing is held?"]
OPTIONS = [["A cup.", "A phone.", "An apple.", "A book."], ["A phone.", "A cup."]]  # 2nd: 2 options of 4
SUFFIX_LEN = 64


@pytest.fixture(scope="module")
def model():
  module = LlavaOnevision(CFG)
  init = jax.jit(lambda key: module.init(key, *llava_dummy_inputs(CFG), method=LlavaOnevision.init_all))
  return module, init(jax.random.key(0))["params"]


@pytest.fixture(scope="module")
def jitted(model):
  """Compiled helpers (each shape compiles once for the module's tests)."""
  module, _ = model
  static = functools.partial(jax.jit, static_argnames=("position_mode",))

  @static
  def scores(params, visual, keep, b, position_mode):
    inputs = prefill.assemble_inputs(module, params, visual, keep, b["prefix"], b["suffix"], b["suffix_len"],
                                     position_mode=position_mode)
    return ar.option_loglikelihoods(module, params, inputs, b["continuation_ids"], b["continuation_len"],
                                    b["num_options"])

  @static
  def first_token(params, visual, keep, b, position_mode):
    logits = prefill.prefill_logits(module, params, visual, keep, b["prefix"], b["suffix"], b["suffix_len"],
                                    position_mode=position_mode)
    return prefill.option_logprobs(logits, b["option_ids"], b["num_options"])

  @static
  def prompt_logp(params, visual, keep, prefix, suffix, suffix_len, position_mode):
    inputs = prefill.assemble_inputs(module, params, visual, keep, prefix, suffix, suffix_len,
                                     position_mode=position_mode)
    hidden = prefill.decode(module, params, inputs)
    logits = module.apply({"params": params}, hidden, method=LlavaOnevision.logits)
    return jax.nn.log_softmax(logits, -1), inputs.answer_index
  return scores, first_token, prompt_logp


def _llm(model, answer_format="option_word", reading="logits", max_new_tokens=4):
  module, params = model
  tok = build_word_tokenizer(WORDS)
  assert len(tok.get_vocab()) <= CFG.text.vocab_size
  return FrozenLLM(CFG, module, params, PromptEncoder(tok, answer_format=answer_format), SUFFIX_LEN, 2,
                   num_options=4, reading=ar.ReadingSettings(reading, max_new_tokens))


def _batch(llm, task=None):
  b = encode_text(QUESTIONS, OPTIONS, llm.prompts, SUFFIX_LEN)
  b["num_options"] = np.asarray([len(o) for o in OPTIONS], np.int32)
  b["visual"] = np.random.default_rng(1).normal(size=(2, 2, 4, CFG.text.hidden_size)).astype(np.float32)
  b["answer"] = np.asarray([1, 0], np.int32)
  b.update(ar.sample_texts({"options": np.asarray([o + [""] * (4 - len(o)) for o in OPTIONS]),
                            "num_options": b["num_options"], **({"task": task} if task else {})}))
  return b


def _reference_loglik(prompt_logp, params, b, keep, position_mode):
  """Each option scored by appending its tokens to the suffix and reading the prefill's own logits."""
  tok = build_word_tokenizer(WORDS)
  visual = jnp.asarray(b["visual"]).reshape(2, 8, -1)
  out = np.full((2, 4), -np.inf)
  for i, row in enumerate(OPTIONS):
    n = int(b["suffix_len"][i])
    for o, text in enumerate(row):
      cont = tok(text, add_special_tokens=False)["input_ids"]
      suffix = np.zeros((1, SUFFIX_LEN), np.int32)
      suffix[0, :n + len(cont)] = list(b["suffix"][i, :n]) + cont
      logp, answer = prompt_logp(params, visual[i:i + 1], keep[i:i + 1], b["prefix"][i:i + 1], jnp.asarray(suffix),
                                 jnp.asarray([n + len(cont)]), position_mode=position_mode)
      logp = np.asarray(logp)
      first = int(answer[0]) - len(cont)  # predicts the continuation's first token
      out[i, o] = sum(float(logp[0, first + j, t]) for j, t in enumerate(cont))
  return out


@pytest.mark.parametrize("position_mode", ["original", "repacked"])
def test_option_likelihood_separates_options_that_share_a_first_token(model, jitted, position_mode):
  llm = _llm(model, reading="option_likelihood")
  b = _batch(llm)
  keep = jnp.asarray([[0, 2, 3, 6, 7], [1, 2, 4, 5, 6]], jnp.int32)
  visual = jnp.asarray(b["visual"]).reshape(2, 8, -1)
  scores, first_token, prompt_logp = jitted
  text = evaluation.text_inputs(b, llm)
  got = np.asarray(scores(llm.params, visual, keep, text, position_mode=position_mode))
  want = _reference_loglik(prompt_logp, llm.params, b, keep, position_mode)
  np.testing.assert_allclose(got, want, atol=1e-4)
  assert np.isneginf(got[1, 2:]).all()  # options never shown
  # "A cup." and "A phone." share the first token "A": the cloze logits reading ties them ...
  first = np.asarray(first_token(llm.params, visual, keep, text, position_mode=position_mode))
  assert first[0, 0] == first[0, 1] and first[1, 0] == first[1, 1]
  # ... the whole-text likelihood does not, and the reading picks its best option
  assert abs(got[0, 0] - got[0, 1]) > 1e-3 and abs(got[1, 0] - got[1, 1]) > 1e-3
  pred = evaluation.answer_fn(llm, "option_likelihood")(llm.params, visual, keep, text, position_mode=position_mode)
  np.testing.assert_array_equal(np.asarray(pred), want.argmax(-1))


def test_letter_format_scores_letter_and_text_as_listed(model):
  llm = _llm(model, answer_format="letter", reading="option_likelihood")
  text = evaluation.text_inputs(_batch(llm), llm)
  tok = llm.prompts.tokenizer
  ids, lens = text["continuation_ids"], text["continuation_len"]
  assert ids.shape[:2] == (2, 4) and ids.shape[2] % ar.CONTINUATION_BUCKET == 0
  assert tok.decode(ids[1, 1, :lens[1, 1]].tolist()) == tok.decode(tok("B. A cup.")["input_ids"])
  assert lens[1, 2] == 0 and lens[1, 3] == 0


def test_likelihood_never_picks_an_absent_option(model, jitted):
  """Sample 1 shows 2 options in a 4-wide batch: whatever the LM prefers, its answer is option 0 or 1
  (the "logits" reading: tests/test_prompt.py::test_a_letter_never_shown_can_never_be_the_answer)."""
  llm = _llm(model, answer_format="letter", reading="option_likelihood")
  b = _batch(llm)
  text = evaluation.text_inputs(b, llm)
  keep = jnp.asarray([[0, 2, 3, 6, 7], [1, 2, 4, 5, 6]], jnp.int32)
  for seed in range(3):
    visual = jnp.asarray(np.random.default_rng(seed).normal(size=(2, 8, CFG.text.hidden_size)) * 5, jnp.float32)
    scores = np.asarray(jitted[0](llm.params, visual, keep, text, position_mode="original"))
    assert np.isfinite(scores[1, :2]).all() and np.isneginf(scores[1, 2:]).all()
    assert 0 <= int(scores.argmax(-1)[1]) < 2
  assert ar.leading_letter("C. A cup.", 2) is None and ar.leading_letter("B", 2) == 1


def test_parsers():
  assert ar.leading_letter(" (B) A cup.", 4) == 1
  assert ar.leading_letter("Apple", 4) is None  # a word, not a letter
  assert ar.option_text_match("a phone", ["A cup.", "A phone."]) == 1
  assert ar.option_text_match("a cupboard", ["A cup.", "A phone."]) is None
  assert ar.parse_generated("The answer is (C).", 4, task="videomme") == 2  # lmms-eval's parser
  assert ar.parse_generated("E", 4, task="longvideobench") is None        # beyond the sample's options
  assert ar.parse_generated("A cup.", 2, options=["A phone.", "A cup."], answer_format="option_word") == 1


def test_generated_text_is_cut_at_the_stop_token(model):
  tok = _llm(model).prompts.tokenizer
  stops = ar.stop_token_ids(tok)
  assert tok.convert_tokens_to_ids("<|im_end|>") in stops
  ids = tok("B . cup <|im_end|> phone", add_special_tokens=False)["input_ids"]
  assert ar.generated_texts(tok, np.asarray([ids]), stops) == [tok.decode(ids[:3])]


def test_generate_reading_in_eval_parses_each_samples_text(model, monkeypatch):
  """evaluate_methods with reading "generate": every method and ratio decodes greedily and hands each
  sample's text, option count, task and options to the parser (here a recording stand-in)."""
  llm = _llm(model, answer_format="letter", reading="generate", max_new_tokens=4)
  b = _batch(llm, task=["videomme", ""])
  seen = []

  def parse(text, num_options, task, options, answer_format):
    seen.append((text, num_options, task, tuple(options), answer_format))
    return 1 if task else None  # sample 0 (answer 1) right, sample 1 unparsed: wrong
  monkeypatch.setattr(ar, "parse_generated", parse)
  results = evaluation.evaluate_methods(llm, lambda: [b], (1.0, 0.5), ["random"], {}, random_seeds=1)
  assert results[("full", 1.0)] == 0.5 and results[("random", 0.5)] == 0.5
  tok = llm.prompts.tokenizer
  stops = ar.stop_token_ids(tok)
  tokens = generate.jit_generate(llm.module)(
      llm.params, jnp.asarray(b["visual"]).reshape(2, 8, -1), prefill.all_keep_indices(2, 8), b["prefix"],
      b["suffix"], b["suffix_len"], max_new_tokens=4, eos_ids=stops, pad_id=ar.pad_token_id(tok))
  texts = ar.generated_texts(tok, np.asarray(tokens), stops)
  assert seen[:2] == [(texts[0], 4, "videomme", tuple(OPTIONS[0]), "letter"),
                      (texts[1], 2, None, tuple(OPTIONS[1]), "letter")]
  assert len(seen) == 2 * 4  # 2 samples; full and random at 50%, each a warm-up and a timed call


def test_reading_config_is_checked():
  c = ml_collections.ConfigDict({"kind": "embedded", "checkpoint": ""})
  assert ar.reading_settings(c) == ar.ReadingSettings("logits", ar.DEFAULT_MAX_NEW_TOKENS)
  c.answer_reading = "beam"
  with pytest.raises(ValueError, match="config.model.answer_reading='beam'"):
    config_checks.check_model(c)
  c.answer_reading, c.max_new_tokens = "generate", 0
  with pytest.raises(ValueError, match="config.model.max_new_tokens=0"):
    config_checks.check_model(c)


def test_likelihood_and_generate_need_option_texts(model):
  llm = _llm(model, reading="option_likelihood")
  b = _batch(llm)
  del b["options"]
  with pytest.raises(ValueError, match="option texts"):
    evaluation.text_inputs(b, llm)
