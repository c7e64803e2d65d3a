"""rl.budget_control="lagrange": the compression weight is a multiplier held in the train state."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from score_jax.frozen_llm import load_frozen_llm
from score_jax.methods import get_method
from score_jax.rl import train_step as ts
from score_jax.testing.smoke import smoke_config


def test_lagrange_update_rises_above_the_budget_and_falls_to_zero_below():
  w = jnp.float32(0.5)
  assert float(ts.lagrange_update(w, jnp.float32(0.2), 0.1, 0.1)) == pytest.approx(0.6)
  assert float(ts.lagrange_update(w, jnp.float32(0.05), 0.1, 0.1)) == pytest.approx(0.45)
  assert float(ts.lagrange_update(jnp.float32(0.01), jnp.float32(0.0), 0.1, 0.1)) == 0.0
  assert float(ts.lagrange_update(jnp.float32(9.99), jnp.float32(1.0), 0.1, 1.0)) == ts.MAX_COMP_WEIGHT


def test_train_step_moves_the_multiplier_by_the_rollouts_kept_fraction(tiny_embedded_model):
  overrides = {"rl.sampler": "bernoulli", "rl.logprob": "bernoulli", "rl.ratio": 0.5, "rl.budget": 0.05,
               "rl.group_size": 4, "rl.budget_control": "lagrange", "rl.budget_lr": 0.1, "rl.comp_weight": 0.5}
  config = smoke_config("/unused", tiny_embedded_model, **overrides)
  llm = load_frozen_llm(config.model, None)
  method = get_method(config)
  policy = method.make_policy(config)
  state = method.init_state(config, policy, optax.sgd(0.0), llm, jax.random.key(0))
  assert float(state.comp_weight) == 0.5
  rng = np.random.default_rng(0)
  visual = rng.normal(size=(2, llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size))
  prefix, suffix, lens = llm.prompts.encode_batch(["what shape is moving"] * 2, [["a", "b", "c", "d"]] * 2,
                                                  llm.suffix_len)
  batch = {"visual": visual.astype(np.float32), "prefix": prefix, "suffix": suffix, "suffix_len": lens,
           "answer": np.array([0, 1], np.int32)}
  step = method.make_train_step(config, policy, llm, optax.sgd(0.0), None)
  new, metrics = step(state, batch, jax.random.key(1), llm.params)
  kept = float(metrics["kept_fraction"])
  assert float(metrics["comp_weight"]) == 0.5  # this step's advantage used the old multiplier
  assert float(new.comp_weight) == pytest.approx(0.5 + 0.1 * (kept / 0.05 - 1.0), rel=1e-5)
  with pytest.raises(ValueError, match="budget_control"):
    ts.RLSettings(budget_control="lagrange")  # the fixed-k sampler has no count to steer
  with pytest.raises(ValueError, match="budget_control"):
    ts.RLSettings(budget_control="lagrange_two_sided")


def test_two_sided_multiplier_goes_negative_and_then_credits_keeping_more():
  from score_jax.rl import advantages as adv_lib
  assert float(ts.lagrange_update(jnp.float32(0.0), jnp.float32(0.05), 0.1, 0.2, two_sided=True)) == pytest.approx(-0.1)
  split = adv_lib.get_advantage("split")
  task = jnp.zeros((1, 4))
  correct = jnp.ones((1, 4))
  kept = jnp.array([[0.02, 0.05, 0.08, 0.11]])
  comp = 1.0 - kept
  below = np.asarray(ts.budget_advantage(split, task, comp, correct, kept, jnp.float32(-0.5)))[0]
  assert (np.diff(below) > 0).all()  # below the budget: more kept, more credit
  above = np.asarray(ts.budget_advantage(split, task, comp, correct, kept, jnp.float32(0.5)))[0]
  np.testing.assert_allclose(above, np.asarray(split(task, comp, correct=correct, comp_weight=0.5))[0])
  assert (np.diff(above) < 0).all()  # above it: SCORE's split advantage, sparsity credited
