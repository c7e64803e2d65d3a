"""The jitted CaCoVID train step on a tiny random LLaVA-OneVision: compiles once per rate, runs, learns state."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from score_jax.compress.cacovid_policy import CaCoVIDPolicy
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.rl import dynamic_ratio as dr
from score_jax.rl.cacovid_step import (CaCoVIDSettings, init_cacovid_memory, make_cacovid_train_step)
from score_jax.rl.train_step import TrainState
from score_jax.testing.random_params import numpy_params, touch_all

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                              image_size=8, patch_size=4),
    text=Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0))
B, T, P = 2, 4, 16




def test_settings_validation():
  with pytest.raises(ValueError):
    CaCoVIDSettings(token_rollouts=1)
  with pytest.raises(ValueError):
    CaCoVIDSettings(base_ratio=0.0)
  np.testing.assert_allclose(CaCoVIDSettings().ladder, [0.01, 0.02, 0.04, 0.08, 0.12])


def test_step_compiles_once_and_runs():
  module = LlavaOnevision(CFG)
  llm_params = numpy_params(lambda key, ids, x: module.init(key, ids, x, method=touch_all),
                            jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 1, 32)))
  policy = CaCoVIDPolicy(hidden=16, num_heads=2)
  rng = np.random.default_rng(0)
  batch = dict(visual=jnp.asarray(rng.normal(size=(B, T, P, 32)), jnp.float32),
               prefix=jnp.asarray(rng.integers(0, 32, (B, 3)), jnp.int32),
               suffix=jnp.asarray(rng.integers(0, 32, (B, 5)), jnp.int32), suffix_len=jnp.array([5, 4]),
               answer=jnp.array([0, 2]))
  params = numpy_params(policy.init, batch["visual"], jnp.zeros((B, 5, 32)), jnp.ones((B, 5), bool), seed=1)
  tx = optax.adamw(1e-2)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
  settings = CaCoVIDSettings(base_ratio=0.125, token_rollouts=3, frame_rollouts=2, visits=2)
  step = make_cacovid_train_step(policy, module, tx, settings, jnp.array([3, 5, 7, 9]))
  memory = init_cacovid_memory(settings, B, T, P)
  before = jax.tree_util.tree_map(np.asarray, params)
  ratio = settings.base_ratio
  for visit in range(3):  # the third visit wraps the ring buffer (capacity 2 visits)
    ratio = dr.update_ratio(ratio, 0.5, settings.ladder)  # mid reward: the rate (and k) stays
    state, memory, metrics = step(state, batch, memory, jax.random.key(visit), llm_params, ratio=ratio)
  assert step._cache_size() == 1  # one compile for the three visits
  assert int(state.step) == 3 and int(memory.token_count[0]) == 9 and int(memory.frame_count[0]) == 6
  assert bool(memory.token_valid.all()) and bool(memory.has_old.all())
  assert int(metrics["tokens_kept"]) == T * 2  # round(0.125 * 16) = 2 tokens per frame
  for name in ("loss", "reward_token", "reward_frame", "reward_content", "memory_reward", "grad_norm"):
    assert np.isfinite(float(metrics[name])), name
  kept = np.asarray(memory.token_masks).sum(-1)
  assert np.all(kept == T * 2)  # every remembered token rollout keeps k tokens per frame
  assert np.all(np.asarray(memory.frame_masks).sum(-1) == 1)  # n_f = ceil(4 * 0.125) = 1 frame
  assert 0.0 < float(metrics["reward_token"]) < 1.0  # this seed gives mixed rewards, hence a gradient
  assert float(metrics["grad_norm"]) > 0.0
  moved = jax.tree_util.tree_map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params, before)
  assert max(jax.tree_util.tree_leaves(moved)) > 0
