"""Rollouts gather each (sample, mask)'s kept tokens from the sample's own tokens: the same option
log-probs as repeating every video G times first (the former path), without the [B * G, N, d] copy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.models import prefill
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import group_sample
from score_jax.testing.random_params import numpy_params, touch_all

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=8, patch_size=4),
    text=Qwen2Config(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2))
B, G, N, K, LP, LS = 3, 4, 24, 6, 2, 5


def repeated_path(module, params, visual, masks, batch, option_ids, position_mode):
  """The former rollout: every input repeated G times, one [B * G] prefill."""
  b, g, k = masks.indices.shape
  rep = lambda x: jnp.repeat(x, g, axis=0)
  logits = prefill.prefill_logits(module, params, rep(visual), masks.indices.reshape(b * g, k), rep(batch["prefix"]),
                                  rep(batch["suffix"]), rep(batch["suffix_len"]),
                                  keep_valid=masks.valid.reshape(b * g, k), position_mode=position_mode)
  ids = rep(batch["option_ids"]) if "option_ids" in batch else option_ids
  return prefill.option_logprobs(logits, ids, rep(batch["num_options"])).reshape(b, g, -1)


@pytest.mark.parametrize("sampler,position_mode", [("gumbel_topk", "original"), ("bernoulli", "repacked")])
def test_gather_equals_repeated_videos(sampler, position_mode):
  module = LlavaOnevision(CFG)
  rng = np.random.default_rng(0)
  visual = jnp.asarray(rng.normal(size=(B, N, CFG.text.hidden_size)), jnp.float32)
  ids = jnp.zeros((1, 2), jnp.int32)
  params = numpy_params(lambda key, i, x: module.init(key, i, x, method=touch_all), ids, visual[:1, :3])
  logits = jnp.asarray(rng.normal(size=(B, N)), jnp.float32)
  masks = group_sample(jax.random.key(1), logits, K, G, sampler)
  batch = {"prefix": jnp.asarray(rng.integers(0, 40, (B, LP)), jnp.int32),
           "suffix": jnp.asarray(rng.integers(0, 40, (B, LS)), jnp.int32),
           "suffix_len": jnp.asarray([5, 3, 4], jnp.int32), "num_options": jnp.asarray([4, 3, 4], jnp.int32)}
  if sampler == "bernoulli":  # per-sample option ids (the "option_word" format)
    batch["option_ids"] = jnp.asarray(rng.integers(0, 40, (B, 4)), jnp.int32)
  letters = np.arange(10, 14, dtype=np.int32)
  got = rollout_option_logprobs(module, params, visual, masks, batch, letters, position_mode)
  want = repeated_path(module, params, visual, masks, batch, letters, position_mode)
  assert got.shape == (B, G, 4)
  np.testing.assert_allclose(got, want, atol=1e-5)
  assert np.isneginf(np.asarray(got)[1, :, 3]).all()  # the option sample 1 does not have
