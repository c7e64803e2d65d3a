"""Blind-test filtering: the frozen LLM's no-video answers decide which samples are kept."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.data.blind_filter import (blind_filter, blind_option_logprobs, blind_wrong,
                                         make_blind_option_logprob_fn)
from score_jax.models import prefill
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.testing.random_params import numpy_params, touch_all

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                              image_size=8, patch_size=4),
    text=Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0))
OPTIONS = jnp.array([3, 5, 7, 9], jnp.int32)




@pytest.fixture(scope="module")
def llm():
  module = LlavaOnevision(CFG)
  params = numpy_params(lambda key, ids, x: module.init(key, ids, x, method=touch_all), jnp.zeros((1, 2), jnp.int32),
                        jnp.zeros((1, 1, 32)))
  rng = np.random.default_rng(1)
  batch = dict(prefix=jnp.asarray(rng.integers(0, 32, (2, 3)), jnp.int32),
               suffix=jnp.asarray(rng.integers(0, 32, (2, 5)), jnp.int32), suffix_len=jnp.array([5, 3]))
  return module, params, batch


def test_blind_logprobs_match_text_only_forward(llm):
  module, params, batch = llm

  @jax.jit
  def run(params, batch):
    args = (batch["prefix"], batch["suffix"], batch["suffix_len"])
    plain = blind_option_logprobs(module, params, *args, OPTIONS)
    nl = blind_option_logprobs(module, params, *args, OPTIONS, with_newline=True)
    empty = jnp.zeros((2, 0, 32))  # prefill with an empty video also works (k = 0)
    ref_nl = prefill.option_logprobs(prefill.prefill_logits(module, params, empty, jnp.zeros((2, 0), jnp.int32),
                                                            *args), OPTIONS)
    ids = jnp.concatenate([batch["prefix"], batch["suffix"]], axis=1)  # sample 0 has no padding
    apply = lambda method, *a: module.apply({"params": params}, *a, method=method)
    hidden = apply(LlavaOnevision.__call__, apply(LlavaOnevision.embed, ids), jnp.broadcast_to(jnp.arange(8), (2, 8)))
    ref0 = prefill.option_logprobs(apply(LlavaOnevision.logits, hidden[:, -1]), OPTIONS)[0]
    padded = blind_option_logprobs(module, params, batch["prefix"], batch["suffix"].at[1, 3:].set(0),
                                   batch["suffix_len"], OPTIONS)
    return plain, nl, ref_nl, ref0, padded

  plain, nl, ref_nl, ref0, padded = run(params, batch)
  assert plain.shape == (2, 4)
  np.testing.assert_allclose(nl, ref_nl, atol=1e-5)
  np.testing.assert_allclose(plain[0], ref0, atol=1e-5)
  np.testing.assert_allclose(padded, plain, atol=1e-5)  # right padding of the suffix is ignored
  assert not np.allclose(plain, nl, atol=1e-4)  # the image_newline token does change the answer


def test_filter_keeps_questions_answered_wrongly_blind(llm):
  module, params, batch = llm
  fn = make_blind_option_logprob_fn(module, params, OPTIONS)
  blind = np.asarray(jnp.argmax(fn(batch), axis=-1))  # the no-video answers are now known
  first = dict(batch, answer=jnp.asarray([blind[0], (blind[1] + 1) % 4]))  # right, wrong
  second = dict(batch, answer=jnp.asarray([(blind[0] + 2) % 4, blind[1]]), valid=np.array([True, False]))
  result = blind_filter(fn, [first, second])
  np.testing.assert_array_equal(result.keep, [False, True, True])  # padded row dropped
  assert result.num_kept == 2 and result.num_total == 3


def test_filter_constructed_logprobs():
  logp = {0: jnp.log(jnp.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]]))}
  batches = [{"id": 0, "answer": jnp.array([0, 0])}]
  result = blind_filter(lambda b: logp[b["id"]], batches)
  np.testing.assert_array_equal(result.keep, [False, True])
  np.testing.assert_array_equal(blind_wrong(logp[0], jnp.array([3, 3])), [True, False])
  assert blind_filter(lambda b: None, []).num_total == 0
  with pytest.raises(ValueError):
    blind_filter(lambda b: logp[0], [{"id": 0}])
