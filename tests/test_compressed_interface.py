"""The compressor interface: what the LLM sees (tokens, positions, validity). Every selector gives, through
it, exactly the option log-probs of the former selection path (prefill gathering the kept indices)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import config_checks
from score_jax.compress import compressed
from score_jax.compress.baselines import SELECTORS, get_compressor, get_selector
from score_jax.compress.baselines.uniform_pool import uniform_pool
from score_jax.models import prefill
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import MaskSample
from score_jax.testing.random_params import numpy_params, touch_all

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                              image_size=8, patch_size=4),
    text=Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0))
B, T, P, K = 2, 3, 9, 6  # uniform pooling makes exactly K = 3 x (1 x 2) tokens
LETTERS = jnp.arange(10, 14, dtype=jnp.int32)


@pytest.fixture(scope="module")
def llm():
  module = LlavaOnevision(CFG)
  params = numpy_params(lambda key, ids, x: module.init(key, ids, x, method=touch_all), jnp.zeros((1, 2), jnp.int32),
                        jnp.zeros((1, 1, 32)))
  rng = np.random.default_rng(0)
  data = dict(visual=jnp.asarray(rng.normal(size=(B, T, P, 32)), jnp.float32),
              prefix=jnp.asarray(rng.integers(0, 32, (B, 3)), jnp.int32),
              suffix=jnp.asarray(rng.integers(0, 32, (B, 5)), jnp.int32), suffix_len=jnp.array([5, 3]),
              oracle_scores=jnp.asarray(rng.uniform(size=(B, T, P)), jnp.float32))
  return module, params, data


def _former_inputs(module, params, visual, keep_idx, prefix, suffix, suffix_len, position_mode):
  """The selection path as prefill built it before the interface (score_jax/models/prefill.py at 49960dc)."""
  b = visual.shape[0]
  visual = visual.reshape(b, -1, visual.shape[-1])
  n, d, k = visual.shape[1], visual.shape[2], keep_idx.shape[1]
  lp, ls = prefix.shape[1], suffix.shape[1]
  apply = lambda method, *a: module.apply({"params": params}, *a, method=method)
  kept = jnp.take_along_axis(visual, keep_idx[..., None].astype(jnp.int32), axis=1).astype(module.dtype)
  embeds = jnp.concatenate([apply(LlavaOnevision.embed, prefix), kept,
                            jnp.broadcast_to(apply(LlavaOnevision.newline), (b, 1, d)),
                            apply(LlavaOnevision.embed, suffix)], axis=1)
  valid = jnp.concatenate([jnp.ones((b, lp + k + 1), bool), jnp.arange(ls)[None, :] < suffix_len[:, None]], axis=1)
  if position_mode == "original":
    positions = jnp.concatenate([jnp.broadcast_to(jnp.arange(lp), (b, lp)), lp + keep_idx, jnp.full((b, 1), lp + n),
                                 jnp.broadcast_to(lp + n + 1 + jnp.arange(ls), (b, ls))], axis=1)
  else:
    positions = jnp.cumsum(valid, axis=1) - 1
  return prefill.PrefillInputs(embeds, positions.astype(jnp.int32), valid, (lp + k + suffix_len).astype(jnp.int32))


def _logprobs(module, params, inputs):
  hidden = prefill.decode(module, params, inputs)
  last = jnp.take_along_axis(hidden, inputs.answer_index[:, None, None], axis=1)[:, 0]
  logits = module.apply({"params": params}, last, method=LlavaOnevision.logits).astype(jnp.float32)
  return prefill.option_logprobs(logits, LETTERS)


def test_every_selector_keeps_its_former_results(llm):
  module, params, data = llm
  text = (data["prefix"], data["suffix"], data["suffix_len"])
  names = sorted(SELECTORS) + ["uniform_pool"]

  @jax.jit
  def both(params, data):  # one compile, one decoder call: every method, both paths, both position modes
    extras = dict(data, llm_module=module, llm_params=params)
    inputs, kept = [], {}
    for name in names:
      key = jax.random.key(3)
      if name == "uniform_pool":  # the pooler: the former path gathered every pooled token
        visual, idx = uniform_pool(data["visual"], K), prefill.all_keep_indices(B, K)
      else:
        visual, idx = data["visual"], get_selector(name)(data["visual"], K, key=key, extras=extras)
      video = get_compressor(name)(data["visual"], K, key=key, extras=extras)
      kept[name] = (idx, video.positions)
      for mode in prefill.POSITION_MODES:
        inputs.append(_former_inputs(module, params, visual, idx, *text, mode))
        inputs.append(prefill.assemble_inputs(module, params, video, None, *text, position_mode=mode))
    stacked = jax.tree_util.tree_map(lambda *x: jnp.concatenate(x), *inputs)
    return _logprobs(module, params, stacked).reshape(len(names), len(prefill.POSITION_MODES), 2, B, -1), kept

  logp, kept = both(params, data)
  logp = np.asarray(logp)
  assert len(names) >= 10 and np.all(np.isfinite(logp))
  for i, name in enumerate(names):
    np.testing.assert_allclose(logp[i, :, 1], logp[i, :, 0], rtol=0, atol=1e-6, err_msg=name)
    idx, positions = kept[name]
    np.testing.assert_array_equal(np.asarray(positions), np.asarray(idx), err_msg=name)
  assert not np.allclose(logp[names.index("random"), 0, 0], logp[names.index("residual"), 0, 0])


def test_compressed_positions_reach_the_decoder(llm):
  """Original mode: token j at prefix + positions[j], the newline at prefix + span; repacked ignores them."""
  module, params, data = llm
  tokens = data["visual"].reshape(B, T * P, 32)[:, :4]
  video = compressed.Compressed(tokens, jnp.asarray([[2, 5, 9, 20]] * B, jnp.int32),
                                jnp.asarray([[True, True, False, True]] * B), 27)
  orig = prefill.assemble_inputs(module, params, video, None, data["prefix"], data["suffix"], data["suffix_len"])
  np.testing.assert_array_equal(np.asarray(orig.positions[0, :9]), [0, 1, 2, 5, 8, 12, 23, 30, 31])
  np.testing.assert_array_equal(np.asarray(orig.valid[0, 3:8]), [True, True, False, True, True])
  rep = prefill.assemble_inputs(module, params, video, None, data["prefix"], data["suffix"], data["suffix_len"],
                                position_mode="repacked")
  np.testing.assert_array_equal(np.asarray(rep.positions[0, :9]), [0, 1, 2, 3, 4, 4, 5, 6, 7])  # the masked slot repeats
  # a merged token moves what the LLM answers; the same token elsewhere in position too
  moved = video.replace(positions=video.positions.at[:, 0].set(1))
  logits = jax.jit(lambda params, v: prefill.prefill_logits(module, params, v, None, data["prefix"], data["suffix"],
                                                            data["suffix_len"]))
  assert not np.allclose(np.asarray(logits(params, video)), np.asarray(logits(params, moved)))
  with pytest.raises(ValueError, match="keep_idx=None"):
    prefill.assemble_inputs(module, params, video, jnp.zeros((B, 4), jnp.int32), data["prefix"], data["suffix"],
                            data["suffix_len"])
  with pytest.raises(ValueError, match="must be a Compressed"):
    prefill.assemble_inputs(module, params, tokens, None, data["prefix"], data["suffix"], data["suffix_len"])
  with pytest.raises(ValueError, match=r"\[B, k\]"):
    compressed.gather(tokens, jnp.zeros((4,), jnp.int32))


def test_rollouts_take_compressed_videos(llm):
  module, params, data = llm
  flat = data["visual"].reshape(B, T * P, 32)
  rng = np.random.default_rng(1)
  idx = jnp.asarray(np.sort(np.stack([[rng.choice(T * P, K, replace=False) for _ in range(2)] for _ in range(B)]), -1),
                    jnp.int32)  # [B, G=2, K]
  valid = jnp.ones(idx.shape, bool).at[:, 1, -1].set(False)
  batch = {k: data[k] for k in ("prefix", "suffix", "suffix_len")}
  masks = MaskSample(idx, idx, jnp.zeros((B, 2, T * P), bool), valid)
  videos = jax.vmap(compressed.gather, in_axes=(None, 1, 1), out_axes=1)(flat, idx, valid)
  run = jax.jit(lambda params, visual, m: rollout_option_logprobs(module, params, visual, m, batch, LETTERS))
  want, got = run(params, flat, masks), run(params, None, videos)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-6)


def test_registry_and_config_names():
  names = config_checks.check_eval_methods(["visionzip", "visionzip_select", "fastvid", "uniform_pool"], "world")
  assert names == ["visionzip", "visionzip_select", "fastvid", "uniform_pool"]
  with pytest.raises(ValueError, match="unknown method"):
    config_checks.check_eval_methods(["fastvid2"], "world")
  with pytest.raises(KeyError, match="unknown method"):
    get_compressor("nope")
  assert get_compressor("random").selector is get_selector("random")
