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
from score_jax.rl import ocss
from score_jax.rl.rollout import rollout_option_logprobs
from score_jax.rl.sampling import MaskSample
from score_jax.rl.cacovid_step import (CaCoVIDSettings, cacovid_loss, init_cacovid_memory, make_cacovid_train_step,
                                      without_repeats)
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
  with pytest.raises(ValueError, match="task_reward"):
    CaCoVIDSettings(task_reward="accuracy")
  with pytest.raises(ValueError, match="subspace_draw"):
    CaCoVIDSettings(subspace_draw="clip")
  with pytest.raises(ValueError, match="cacovid.drop_repeats"):
    CaCoVIDSettings(drop_repeats=1.5)
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
  levels = np.array([4, 4])  # rung 4 of the ladder = the base rate 0.125: round(0.125 * 16) = 2 tokens per frame
  for visit in range(3):  # the third visit wraps the ring buffer (capacity 2 visits)
    # mid reward: the rates stay; then sample 1 alone is found easy and moves one rung down (1 token per frame)
    levels = dr.update_levels(levels, [0.5, 0.5] if visit < 2 else [0.5, 0.9], len(settings.ladder))
    state, memory, metrics = step(state, batch, memory, jax.random.key(visit), llm_params,
                                  ratio=settings.ladder[levels.max()], levels=jnp.asarray(levels))
  assert step._cache_size() == 1  # one compile for the three visits, whatever the mix of rates
  assert int(state.step) == 3 and int(memory.token_count[0]) == 9 and int(memory.frame_count[0]) == 6
  assert bool(memory.token_valid.all()) and bool(memory.has_old.all())
  assert float(metrics["tokens_kept"]) == (2 * T + T) / 2  # the last visit: 2 and 1 tokens per frame
  for name in ("loss", "reward_token", "reward_frame", "reward_content", "memory_reward", "grad_norm"):
    assert np.isfinite(float(metrics[name])), name
  kept = np.asarray(memory.token_masks).sum(-1)
  # every remembered token rollout keeps its own sample's k tokens per frame; slots 0-2 hold the third visit
  np.testing.assert_array_equal(kept, [[2 * T] * 6, [T] * 3 + [2 * T] * 3])
  np.testing.assert_array_equal(memory.token_levels, [[4] * 6, [3] * 3 + [4] * 3])
  np.testing.assert_array_equal(memory.frame_levels, [[4] * 4, [3] * 2 + [4] * 2])  # frame rollouts' rungs too
  assert np.all(np.asarray(memory.frame_masks).sum(-1) == 1)  # n_f = ceil(4 * 0.125) = 1 frame
  assert 0.0 < float(metrics["reward_token"]) < 1.0  # this seed gives mixed rewards, hence a gradient
  assert float(metrics["grad_norm"]) > 0.0
  moved = jax.tree_util.tree_map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params, before)
  assert max(jax.tree_util.tree_leaves(moved)) > 0


def _tiny(seed=0):
  module = LlavaOnevision(CFG)
  llm_params = numpy_params(lambda key, ids, x: module.init(key, ids, x, method=touch_all),
                            jnp.zeros((1, 2), jnp.int32), jnp.zeros((1, 1, 32)))
  rng = np.random.default_rng(seed)
  batch = dict(visual=jnp.asarray(rng.normal(size=(B, T, P, 32)), jnp.float32),
               prefix=jnp.asarray(rng.integers(0, 32, (B, 3)), jnp.int32),
               suffix=jnp.asarray(rng.integers(0, 32, (B, 5)), jnp.int32), suffix_len=jnp.array([5, 4]),
               answer=jnp.array([0, 2]))
  return module, llm_params, batch


def _policy_state(batch):
  """(a small CaCoVID policy, its optimiser, a fresh TrainState) for `_tiny`'s batch."""
  policy = CaCoVIDPolicy(hidden=16, num_heads=2)
  params = numpy_params(policy.init, batch["visual"], jnp.zeros((B, 5, 32)), jnp.ones((B, 5), bool), seed=1)
  tx = optax.adamw(1e-2)
  return policy, tx, TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _memory_with(masks, rewards, levels, old_tok, old_fr, frame_masks, frame_rewards):
  mem = dr.init_memory(masks.shape[1], frame_masks.shape[1], masks.shape[-1], frame_masks.shape[-1], (masks.shape[0],))
  mem = dr.set_old_logits(mem, old_tok.reshape(masks.shape[0], -1), old_fr)
  mem = dr.append_token(mem, masks, rewards, levels)
  return dr.append_frame(mem, frame_masks, frame_rewards)


@pytest.mark.parametrize("draw", ["frame", "mixed"])  # "mixed" takes both the per-frame and the per-video term
def test_exact_loss_raises_the_probability_of_good_rollouts(draw):
  # ocss_exact: a few gradient steps on the logits themselves make the rewarded masks more likely under OCSS
  # and the unrewarded ones less likely, for tokens (rollouts at two rungs) and frames; per frame or per video
  t, p, c = 2, 8, 8
  settings = CaCoVIDSettings(base_ratio=0.25, token_rollouts=4, frame_rollouts=2, logprob="ocss_exact",
                             subspace_draw=draw)
  shapes = ((1, 4), (2, 2))
  rng = np.random.default_rng(0)
  old_tok = jnp.asarray(rng.normal(size=(1, t, p)), jnp.float32)
  old_fr = jnp.asarray(rng.normal(size=(1, t)), jnp.float32)
  levels = jnp.array([[0, 1] * (c // 2)])
  sample = jax.jit(lambda key, lv: ocss.ocss_group_sample_by_level(key, old_tok, lv, shapes, c // 2, first_topk=False,
                                                                  draw=draw))
  s0, s1 = sample(jax.random.key(1), jnp.array([0])), sample(jax.random.key(2), jnp.array([1]))
  masks = jnp.stack([s0.mask[0], s1.mask[0]], axis=1).reshape(1, c, t * p)  # alternating rungs 0, 1
  rewards = jnp.array([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
  frame_masks = jnp.array([[[True, False], [False, True]]])
  mem = _memory_with(masks, rewards, levels, old_tok, old_fr, frame_masks, jnp.array([[1.0, 0.0]]))
  grad_fn = jax.jit(jax.value_and_grad(lambda tok, fr: cacovid_loss(tok, fr, mem, settings, shapes, 1),
                                       argnums=(0, 1), has_aux=True))
  (value, aux), grads = grad_fn(old_tok, old_fr)
  assert np.isfinite(float(value)) and float(aux["token_ratio_mean"]) == pytest.approx(1.0, abs=1e-5)
  if draw == "video":  # the draws keep one rank block in both frames (finite under the per-video log-probability)
    assert np.all(np.isfinite(np.asarray(ocss.ocss_set_logprob_by_level(old_tok, masks, levels, shapes,
                                                                          draw="video"))))
  assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[1]).sum()) > 0
  tok, fr = old_tok, old_fr
  for _ in range(5):
    _, (g_tok, g_fr) = grad_fn(tok, fr)
    tok, fr = tok - 0.3 * g_tok, fr - 0.3 * g_fr
  lp = jax.jit(lambda logits, f: (ocss.ocss_set_logprob_by_level(logits, mem.token_masks, mem.token_levels, shapes,
                                                                 draw=draw)[0],
                                  ocss.frame_set_logprob(f, frame_masks, 1)[0]))
  (lp_new, lf_new), (lp_old, lf_old) = lp(tok, fr), lp(old_tok, old_fr)
  delta = np.asarray(lp_new - lp_old)
  good = np.asarray(rewards[0]) > 0
  assert delta[good].mean() > 0 > delta[~good].mean()
  fr_delta = np.asarray(lf_new - lf_old)
  assert fr_delta[0] > 0 > fr_delta[1]


def test_per_rate_advantage_groups_compare_rollouts_of_one_rate():
  # advantage_groups="sample_rate": a rollout drawn at the lower rate is judged against that rate's rollouts only,
  # so the loss differs from the pooled one when rates mix, and equals it when every rollout has one rate
  t, p, c = 2, 8, 8
  shapes = ((1, 4), (2, 2))
  rng = np.random.default_rng(0)
  old_tok = jnp.asarray(rng.normal(size=(1, t, p)), jnp.float32)
  old_fr = jnp.asarray(rng.normal(size=(1, t)), jnp.float32)
  masks = jnp.asarray(rng.random((1, c, t * p)) < 0.3)
  rewards = jnp.array([[1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
  frame_masks = jnp.array([[[True, False], [False, True]]])

  def loss(groups, levels):
    settings = CaCoVIDSettings(base_ratio=0.25, token_rollouts=4, frame_rollouts=2, advantage_groups=groups)
    mem = _memory_with(masks, rewards, levels, old_tok, old_fr, frame_masks, jnp.array([[1.0, 0.0]]))
    return float(cacovid_loss(old_tok + 0.5, old_fr, mem, settings, shapes, 1)[0])

  mixed = jnp.array([[0] * 4 + [1] * 4])
  assert loss("sample_rate", mixed) != pytest.approx(loss("sample", mixed), abs=1e-6)
  one = jnp.ones((1, c), jnp.int32)
  assert loss("sample_rate", one) == pytest.approx(loss("sample", one), abs=1e-6)
  with pytest.raises(ValueError, match="advantage_groups"):
    CaCoVIDSettings(advantage_groups="rate")


@pytest.mark.slow
def test_exact_logprob_step_runs():
  module, llm_params, batch = _tiny()
  policy, tx, state = _policy_state(batch)
  settings = CaCoVIDSettings(base_ratio=0.125, token_rollouts=3, frame_rollouts=2, visits=2, logprob="ocss_exact")
  shapes = ocss.rung_shapes(settings.ladder, P, settings.lam)
  step = make_cacovid_train_step(policy, module, tx, settings, jnp.array([3, 5, 7, 9]))
  memory = init_cacovid_memory(settings, B, T, P)
  for visit, levels in enumerate(([4, 3], [4, 1])):
    state, memory, metrics = step(state, batch, memory, jax.random.key(visit), llm_params, ratio=0.125,
                                  levels=jnp.array(levels))
  assert step._cache_size() == 1
  lp_old = ocss.ocss_set_logprob_by_level(memory.old_token_logits.reshape(B, T, P), memory.token_masks,
                                          memory.token_levels, shapes)
  assert np.all(np.isfinite(np.asarray(lp_old)))  # each remembered rollout at the rung it was drawn at
  for name in ("loss", "token_ratio_mean", "frame_ratio_mean", "grad_norm", "token_kl"):
    assert np.isfinite(float(metrics[name])), name


def test_padded_rollouts_answer_like_unpadded_ones():
  # a sample at a lower rate is prefilled with the batch's largest k and its extra slots invalid: same answer
  module, llm_params, batch = _tiny(1)
  logits = jnp.asarray(np.random.default_rng(2).normal(size=(B, T, P)), jnp.float32)
  s = ocss.ocss_group_sample_by_level(jax.random.key(0), logits, jnp.array([1, 0]), ((1, 8), (2, 4)), 3)
  visual = batch["visual"].reshape(B, T * P, 32)
  option_ids = jnp.array([3, 5, 7, 9])
  rollout = jax.jit(lambda v, m, bt: rollout_option_logprobs(module, llm_params, v, m, bt, option_ids))
  padded = rollout(visual, s, batch)
  idx = s.indices[1:, :, :T]  # sample 1's T valid indices come first
  assert bool(s.valid[1, :, :T].all()) and not bool(s.valid[1, :, T:].any())
  alone = rollout(visual[1:], MaskSample(idx, idx, s.mask[1:], jnp.ones(idx.shape, bool)),
                  {k: v[1:] for k, v in batch.items()})
  np.testing.assert_allclose(np.asarray(padded[1]), np.asarray(alone[0]), atol=1e-4)


@pytest.mark.slow  # ~15 s; keeps the default run under 15 minutes
def test_dense_task_reward_is_remembered_and_correctness_reported_apart():
  # task_reward="correct+margin": the memory holds correct + 0.5 tanh(margin) (> 1 right, <= 0 wrong), while
  # the per-sample correctness the host moves the rates by stays the 0/1 mean
  module, llm_params, batch = _tiny()
  policy, tx, state = _policy_state(batch)
  settings = CaCoVIDSettings(base_ratio=0.125, token_rollouts=6, frame_rollouts=2, visits=1,
                             task_reward="correct+margin")
  step = make_cacovid_train_step(policy, module, tx, settings, jnp.array([3, 5, 7, 9]))
  _, memory, metrics = step(state, batch, init_cacovid_memory(settings, B, T, P), jax.random.key(0), llm_params,
                            ratio=0.125)
  r = np.asarray(memory.token_rewards)
  assert np.all((r > 1.0) | (r <= 0.0)) and len(np.unique(r)) > 2, r
  np.testing.assert_allclose(metrics["token_correct_by_sample"], (r > 0.5).mean(-1))
  assert float(metrics["reward_token"]) == pytest.approx(float((r > 0.5).mean()))


def test_rollouts_without_repeats_answer_from_frame_zero_and_what_changed():
  # sample 0 is a still video (every frame frame 0's tokens), sample 1 changes at every place in every frame:
  # drop_repeats hides sample 0's kept tokens after frame 0 (the LLM answers as from frame 0's alone) and
  # nothing of sample 1
  module, llm_params, batch = _tiny(3)
  visual = batch["visual"].at[0].set(jnp.broadcast_to(batch["visual"][0, :1], (T, P, 32)))
  s = ocss.ocss_group_sample_by_level(jax.random.key(0), jnp.zeros((B, T, P)), jnp.array([0, 0]), ((2, 4),), 3)
  answered = without_repeats(s, visual, 0.95)
  frame0 = np.asarray(s.indices) < P
  np.testing.assert_array_equal(np.asarray(answered.valid[0]), frame0[0])
  assert bool(answered.valid[1].all()) and frame0[0].sum() == 3 * 2  # 2 tokens of frame 0 per rollout
  option_ids = jnp.array([3, 5, 7, 9])
  rollout = jax.jit(lambda v, m, bt: rollout_option_logprobs(module, llm_params, v, m, bt, option_ids))
  flat = visual.reshape(B, T * P, 32)
  got = rollout(flat, answered, batch)
  idx = jnp.asarray(np.asarray(s.indices[:1])[frame0[:1]].reshape(1, 3, 2))  # frame 0's kept tokens only
  alone = rollout(flat[:1], MaskSample(idx, idx, s.mask[:1], jnp.ones(idx.shape, bool)),
                  {k: v[:1] for k, v in batch.items()})
  np.testing.assert_allclose(np.asarray(got[0]), np.asarray(alone[0]), atol=1e-4)
  assert not np.allclose(np.asarray(rollout(flat, s, batch)[0]), np.asarray(got[0]), atol=1e-4)


def test_step_with_drop_repeats_answers_fewer_tokens_of_a_still_video():
  module, llm_params, batch = _tiny()
  settings = CaCoVIDSettings(base_ratio=0.125, token_rollouts=3, frame_rollouts=2, visits=1, content_rollouts=0,
                             drop_repeats=0.95)
  still = dict(batch, visual=jnp.broadcast_to(batch["visual"][:, :1], batch["visual"].shape))
  for video, fewer in ((batch, False), (still, True)):
    policy, tx, state = _policy_state(batch)  # the step donates its state
    step = make_cacovid_train_step(policy, module, tx, settings, jnp.array([3, 5, 7, 9]))
    _, _, metrics = step(state, video, init_cacovid_memory(settings, B, T, P), jax.random.key(0), llm_params,
                         ratio=0.125)
    kept, answered = float(metrics["tokens_kept"]), float(metrics["tokens_answered"])
    assert (answered < kept) if fewer else (answered == kept), (kept, answered)


def test_warm_start_makes_the_question_attention_the_llms_first_layer():
  # the policy's first layer takes the frozen LLM's first decoder layer: the question's attention logits onto
  # the visual tokens are then the LLM's layer-0 ones at the same positions (video at 0..N-1, question after)
  from types import SimpleNamespace
  from score_jax.methods.cacovid import warm_start
  from score_jax.models.partial_forward import layer_query_key
  module, llm_params, batch = _tiny()
  llm = SimpleNamespace(cfg=CFG, params=llm_params)
  text = CFG.text
  policy = CaCoVIDPolicy(hidden=None, num_heads=text.num_attention_heads, num_kv_heads=text.num_key_value_heads,
                         intermediate_size=text.intermediate_size, rope_theta=text.rope_theta,
                         question_attention=True)
  question = module.apply({"params": llm_params}, batch["suffix"], method=LlavaOnevision.embed)
  mask = jnp.ones(batch["suffix"].shape, bool)
  params = warm_start(numpy_params(policy.init, batch["visual"], question, mask, seed=1), policy, llm)
  for got, want in zip(jax.tree_util.tree_leaves(params["layer_0"]),
                       jax.tree_util.tree_leaves(llm_params["language_model"]["layers"])):
    np.testing.assert_array_equal(got, want[0])
  assert not np.any(params["type_embed"])
  _, state = policy.apply({"params": params}, batch["visual"], question, mask, capture_intermediates=True)
  onto_visual = state["intermediates"]["layer_0"]["self_attn"]["__call__"][0][1]  # [B, H, L, N]
  n = T * P
  hidden = jnp.concatenate([batch["visual"].reshape(B, n, -1), question], axis=1)
  positions = jnp.broadcast_to(jnp.arange(hidden.shape[1]), (B, hidden.shape[1]))
  q, k = layer_query_key(module, llm_params, hidden, positions, 0)
  k = jnp.repeat(k[:, :n], text.num_attention_heads // text.num_key_value_heads, axis=2)
  want = jnp.einsum("bjhd,bihd->bhji", q[:, n:], k) / np.sqrt(text.head_size)
  np.testing.assert_allclose(np.asarray(onto_visual), np.asarray(want), rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match=r"config.policy.num_kv_heads=2 \(is 4\)"):
    warm_start(params, CaCoVIDPolicy(hidden=None, num_heads=text.num_attention_heads, mlp_ratio=2,
                                     rope_theta=text.rope_theta), llm)
  with pytest.raises(ValueError, match=r"config.policy.hidden=0 \(is 32\), config.policy.intermediate_size=64"):
    warm_start(params, CaCoVIDPolicy(hidden=32, num_heads=text.num_attention_heads, num_kv_heads=2, mlp_ratio=4,
                                     rope_theta=text.rope_theta), llm)
