"""End to end: the train entry point (both curriculum stages, checkpoints, eval), compile-once, resume."""
import os
import re
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from score_jax import train as train_lib
from score_jax.frozen_llm import load_frozen_llm
from score_jax.methods import get_method
from score_jax.models import prefill, sharding as shd

from score_jax.testing.smoke import REPO, smoke_config


def test_train_step_compiles_once(tiny_embedded_model):
  config = smoke_config("/unused", tiny_embedded_model)
  mesh = shd.make_mesh((1, 1, 1))
  llm = load_frozen_llm(config.model, mesh)
  method = get_method(config)
  policy = method.make_policy(config)
  tx = optax.adam(1e-3)
  state = method.init_state(config, policy, tx, llm, jax.random.key(0), mesh)
  step = method.make_train_step(config, policy, llm, tx, mesh)
  rng = np.random.default_rng(0)
  first = jax.tree_util.tree_map(np.asarray, state.params)
  for i in range(3):
    b = 2
    visual = rng.normal(size=(b, llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size))
    prefix, suffix, lens = llm.prompts.encode_batch(["what shape is moving"] * b, [["a", "b", "c", "d"]] * b,
                                                    llm.suffix_len)
    batch = {"visual": visual.astype(np.float32), "prefix": prefix, "suffix": suffix, "suffix_len": lens,
             "answer": rng.integers(0, 4, b).astype(np.int32)}
    state, metrics = step(state, batch, jax.random.key(i), llm.params)
  assert step._cache_size() == 1
  assert int(state.step) == 3 and np.isfinite(float(metrics["loss"]))
  n = llm.num_frames * llm.cfg.tokens_per_frame
  assert 0 < float(metrics["entropy"]) <= np.log(n) + 1e-5
  moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params, first)
  assert max(jax.tree_util.tree_leaves(moved)) > 0


@pytest.mark.slow  # ~20 s; an option, not the default
def test_entropy_bonus_raises_the_keep_entropy(tiny_embedded_model):
  """One update from the same state and rollouts: with a large entropy_coef the keep logits end up
  flatter (higher softmax entropy) than without it."""
  from score_jax.rl.losses import token_entropy
  from score_jax.rl.train_step import policy_logits
  entropies = {}
  for coef in (0.0, 5.0):
    config = smoke_config("/unused", tiny_embedded_model, **{"rl.entropy_coef": coef, "rl.group_size": 4})
    llm = load_frozen_llm(config.model, None)
    method = get_method(config)
    policy = method.make_policy(config)
    tx = optax.sgd(1e-3)
    state = method.init_state(config, policy, tx, llm, jax.random.key(0))
    visual = np.random.default_rng(1).normal(
        size=(2, llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size)).astype(np.float32)
    prefix, suffix, lens = llm.prompts.encode_batch(["what shape is moving"] * 2, [["a", "b", "c", "d"]] * 2,
                                                    llm.suffix_len)
    batch = {"visual": visual, "prefix": prefix, "suffix": suffix, "suffix_len": lens,
             "answer": np.array([0, 1], np.int32)}
    step = method.make_train_step(config, policy, llm, tx, None)
    state, _ = step(state, batch, jax.random.key(3), llm.params)
    entropies[coef] = float(token_entropy(policy_logits(policy, state.params, visual)))
  assert entropies[5.0] > entropies[0.0] + 1e-3, entropies


def test_smoke_run_trains_checkpoints_and_evaluates(uninterrupted):
  workdir, out = uninterrupted
  assert out["final_step"] == 6  # pseudo:3 + video:3
  steps = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  assert steps[-1] == 6 and len(steps) <= 2  # keep_checkpoints = 2
  assert any(f.startswith("events") for f in os.listdir(workdir / "tb"))
  table = (workdir / "eval.md").read_text()
  for name in ("score", "uniform_pool", "random", "residual", "oracle"):
    assert f"| {name} |" in table
  for ext in ("csv", "json", "png"):
    assert (workdir / f"eval.{ext}").stat().st_size > 0
  res = out["eval"]
  assert 0.0 <= res[("full", 1.0)] <= 1.0 and ("score", 0.1) in res and ("oracle", 0.25) in res


@pytest.mark.slow  # ~40 s; the SIGTERM resume test (test_run_safety.py) stays in the default run; keeps the default run under 15 minutes
def test_killed_run_resumes_to_the_same_params(uninterrupted, tiny_embedded_model, tmp_path):
  _, full = uninterrupted
  workdir = tmp_path / "run_crash"
  cmd = [sys.executable, "-m", "score_jax.train", f"--config={REPO}/experiments/smoke.py",
         f"--config.workdir={workdir}", f"--config.model.checkpoint={tiny_embedded_model}",
         "--config.model.mesh=(1,1,1)", "--config.crash_after_step=4", "--config.eval.at_end=False"]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 3, proc.stderr[-3000:]  # died right after the step-4 checkpoint
  assert max(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit()) == 4
  resumed = train_lib.train(smoke_config(workdir, tiny_embedded_model, **{"eval.at_end": False}))
  assert resumed["final_step"] == 6
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                         resumed["params"], full["params"])


def test_bad_config_values_name_the_field(tiny_embedded_model, tmp_path):
  with pytest.raises(ValueError, match="rl.ratio"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, **{"rl.ratio": 1.5}))
  with pytest.raises(ValueError, match="rl.entropy_coef"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, **{"rl.entropy_coef": -0.1}))
  with pytest.raises(ValueError, match="score_eval.tail"):  # an inference setting, checked before training
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, **{"score_eval.tail": 2.0}))
  with pytest.raises(ValueError, match="cacovid_eval.max_frame_share"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, name="cacovid_smoke",
                                 **{"cacovid_eval.max_frame_share": 1.5}))
  with pytest.raises(ValueError, match="cacovid_eval.dedup"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, name="cacovid_smoke", **{"cacovid_eval.dedup": 1.5}))
  with pytest.raises(ValueError, match="cacovid.subspace_draw"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, name="cacovid_smoke",
                                 **{"cacovid.subspace_draw": "clip"}))
  with pytest.raises(ValueError, match="curriculum"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, curriculum="pseudo:3,movies:2"))
  with pytest.raises(ValueError, match="config.method"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, method="magic"))


@pytest.mark.slow  # ~70 s; CaCoVID's step, sampling and losses are tested in test_cacovid_*.py by default
def test_cacovid_trains_through_the_same_command(tiny_embedded_model, tmp_path):
  c = smoke_config(tmp_path, tiny_embedded_model, name="cacovid_smoke")
  out = train_lib.train(c)
  assert out["final_step"] == 4
  assert "| cacovid |" in (tmp_path / "eval.md").read_text()
  assert ("cacovid", 0.1) in out["eval"] and ("random", 0.25) in out["eval"]
  # eval's own --config.cacovid_eval.* overrides reach the trained policy's inference (nothing else does)
  from score_jax import eval as eval_lib
  llm = load_frozen_llm(c.model, shd.make_mesh((1, 1, 1)))
  rng = np.random.default_rng(0)
  feats = {"visual": jax.numpy.asarray(rng.normal(size=(2, 8, 16, llm.cfg.text.hidden_size)), jax.numpy.float32),
           "question": jax.numpy.asarray(rng.normal(size=(2, 5, llm.cfg.text.hidden_size)), jax.numpy.float32),
           "question_mask": jax.numpy.ones((2, 5), bool)}
  keep = lambda ov: np.sort(np.asarray(eval_lib.load_policy(str(tmp_path), llm, ov)[1](feats, 16)), axis=-1)
  assert eval_lib.load_policy(str(tmp_path), llm, {"cacovid_eval.imp": 0.0, "rl.ratio": 0.9})[0].rl.ratio == c.rl.ratio
  np.testing.assert_array_equal(keep(None), keep({"cacovid_eval.imp": c.cacovid_eval.imp}))
  assert not np.array_equal(keep({"cacovid_eval.imp": 0.0}), keep({"cacovid_eval.imp": 1.0}))


def test_blind_filter_keeps_only_questions_missed_without_video(tiny_embedded_model):
  from score_jax.data.blind_filter import blind_option_logprobs
  from score_jax.data.pipeline import make_iterator
  from score_jax.world.sources import WorldSource
  config = smoke_config("/unused", tiny_embedded_model)
  llm = load_frozen_llm(config.model, shd.make_mesh((1, 1, 1)))
  keep = train_lib.blind_keep_fn(llm)
  src = WorldSource(train_lib.WORLD, kind="video", split="train", size=64)
  decisions = [keep(src[i]) for i in range(16)]
  assert 0 < sum(decisions) <= 16
  batch = next(make_iterator(src, 8, seed=0, keep_fn=keep, num_threads=1))
  text = train_lib.model_inputs(batch, llm)
  blind = np.asarray(blind_option_logprobs(llm.module, llm.params, text["prefix"], text["suffix"],
                                           text["suffix_len"], prefill.choice_ids(text, llm.option_ids)))
  assert (blind.argmax(-1) != batch["answer"]).all()


@pytest.mark.slow  # ~60 s; the tail rule's adaptive eval and the split's count-head gradient stay in the default run; keeps the default run under 15 minutes
def test_adaptive_score_trains_and_reports_its_own_budget(tiny_embedded_model, tmp_path):
  """Keep/drop sampling under a cap: the policy starts near its target retention, eval adds an
  adaptive row whose per-sample retention never exceeds the cap, next to the fixed-ratio rows."""
  from score_jax import evaluation
  c = smoke_config(tmp_path, tiny_embedded_model, **{"rl.sampler": "bernoulli", "rl.logprob": "bernoulli",
                                                     "rl.ratio": 0.25, "rl.budget": 0.1, "rl.group_size": 4})
  out = train_lib.train(c)
  name = "score" + evaluation.ADAPTIVE
  mean, std = out["eval"]["_retention"][name]
  assert 0.0 < mean <= 0.25 and std >= 0.0
  assert 0.0 <= out["eval"][(name, evaluation.ADAPTIVE_KEY)] <= 1.0
  table = (tmp_path / "eval.md").read_text()
  assert f"| {name} |" in table and "| score |" in table
  method = get_method(c)
  policy = method.make_policy(c)
  llm = load_frozen_llm(c.model, None)
  state = method.init_state(c, policy, optax.sgd(0.0), llm, jax.random.key(0))
  visual = np.random.default_rng(0).normal(
      size=(2, llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size)).astype(np.float32)
  keep = method.keep_fn(c, policy, state.params)
  idx, valid = keep.adaptive({"visual": visual}, llm.num_frames * llm.cfg.tokens_per_frame)
  n = llm.num_frames * llm.cfg.tokens_per_frame
  assert idx.shape[1] == prefill_budget(n, 0.25)
  assert abs(float(np.asarray(valid).sum(-1).mean()) / n - 0.1) < 0.05  # untrained: about the target


def prefill_budget(n, ratio):
  from score_jax.compress.selection import budget
  return budget(n, ratio)


@pytest.mark.slow  # ~11 s; the sized sampler itself is in test_sampling.py
def test_sized_score_steps_and_keeps_its_own_budget(tiny_embedded_model):
  """Adaptive SCORE with a count head (`sized_topk`): a train step's rollouts differ in size within a
  group, the count head moves, and the adaptive mode keeps each video's expected level count under the
  cap (untrained: uniform over the levels)."""
  levels = (0.1, 0.2, 0.3)
  c = smoke_config("/unused", tiny_embedded_model, **{
      "rl.sampler": "sized_topk", "rl.logprob": "sized_plackett_luce", "rl.ratio": 0.3, "rl.budget": 0.2,
      "rl.count_levels": levels, "rl.group_size": 8, "rl.budget_control": "lagrange_two_sided"})
  method = get_method(c)
  policy = method.make_policy(c)
  llm = load_frozen_llm(c.model, None)
  tx = optax.adam(1e-2)
  state = method.init_state(c, policy, tx, llm, jax.random.key(0))
  n = llm.num_frames * llm.cfg.tokens_per_frame
  rng = np.random.default_rng(0)
  visual = rng.normal(size=(2, llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size)).astype(np.float32)
  idx, valid = method.keep_fn(c, policy, state.params).adaptive({"visual": visual}, n)
  counts = [prefill_budget(n, r) for r in levels]
  assert idx.shape[1] == max(counts)
  np.testing.assert_array_equal(np.asarray(valid).sum(-1), round(np.mean(counts)))
  prefix, suffix, lens = llm.prompts.encode_batch(["what shape is moving"] * 2, [["a", "b", "c", "d"]] * 2,
                                                  llm.suffix_len)
  batch = {"visual": visual, "prefix": prefix, "suffix": suffix, "suffix_len": lens,
           "answer": np.array([0, 1], np.int32)}
  step = method.make_train_step(c, policy, llm, tx, None)
  weight = float(state.comp_weight)
  new, metrics = step(state, batch, jax.random.key(1), llm.params)  # donates `state`
  assert float(metrics["group_kept_std"]) > 0 and np.isfinite(float(metrics["loss"]))
  assert float(new.comp_weight) != weight  # the multiplier follows the kept fraction
  with pytest.raises(ValueError, match="count_levels"):
    ts_settings(sampler="sized_topk", logprob="sized_plackett_luce", ratio=0.2, count_levels=(0.1, 0.3))
  with pytest.raises(ValueError, match="sized_plackett_luce"):
    ts_settings(sampler="sized_topk", logprob="plackett_luce", count_levels=(0.1,))


def test_tail_rule_makes_any_score_policy_adaptive(tiny_embedded_model):
  """score_eval.tail: a fixed-k (gumbel_topk) policy gets an adaptive mode whose counts follow the tail
  rule on its own keep logits, under score_eval.cap."""
  from score_jax.compress.selection import tail_count
  from score_jax.rl.train_step import policy_logits
  c = smoke_config("/unused", tiny_embedded_model)
  method = get_method(c)
  policy = method.make_policy(c)
  llm = load_frozen_llm(c.model, None)
  state = method.init_state(c, policy, optax.sgd(0.0), llm, jax.random.key(0))
  assert method.keep_fn(c, policy, state.params).adaptive is None
  c.score_eval.tail, c.score_eval.cap = 0.5, 0.5
  n = llm.num_frames * llm.cfg.tokens_per_frame
  visual = np.random.default_rng(0).normal(
      size=(3, llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size)).astype(np.float32)
  idx, valid = method.keep_fn(c, policy, state.params).adaptive({"visual": visual}, n)
  assert idx.shape[1] == prefill_budget(n, 0.5)
  want = tail_count(policy_logits(policy, state.params, visual), 0.5, prefill_budget(n, 0.5))
  np.testing.assert_array_equal(np.asarray(valid).sum(-1), np.asarray(want))
  assert 1 <= int(np.asarray(want).min()) < prefill_budget(n, 0.5)
  c.score_eval.floor = 0.25  # every video keeps at least a quarter; the tail rule decides above it
  assert int(np.asarray(want).min()) < prefill_budget(n, 0.25)  # the floor binds for some video
  _, valid = method.keep_fn(c, policy, state.params).adaptive({"visual": visual}, n)
  np.testing.assert_array_equal(np.asarray(valid).sum(-1), np.maximum(np.asarray(want), prefill_budget(n, 0.25)))
  c.score_eval.floor = 0.75
  with pytest.raises(ValueError, match="score_eval.floor"):
    method.keep_fn(c, policy, state.params)
  c.score_eval.floor, c.score_eval.tail = 0.25, 0.0
  with pytest.raises(ValueError, match="tail rule only"):
    method.keep_fn(c, policy, state.params)
  c.score_eval.floor = 0.0
  c.score_eval.tail = 1.5
  with pytest.raises(ValueError, match="score_eval.tail"):
    method.keep_fn(c, policy, state.params)


@pytest.mark.slow  # ~30 s; calibrate_tail itself is in test_selection.py; keeps the default run under 15 minutes
def test_calibrate_tail_command_reaches_its_target_on_a_training_mix(uninterrupted):
  """benchmarks/calibrate_tail.py on the smoke run: the printed tail keeps at most the target mean retention
  on training videos, half of them through the H.264 round trip (`--lossy_fraction`)."""
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "calibrate_tail.py"),
                        f"--checkpoint={uninterrupted[0]}", "--target=0.1", "--cap=0.3", "--samples=16",
                        "--lossy_fraction=0.5"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  m = re.search(r"score_eval.tail=(\S+) +\(on 16 training videos, 50% through H.264: retention (\S+) ± (\S+)",
                out.stdout)
  assert m, out.stdout
  assert 0.0 < float(m.group(1)) <= 1.0 and 0.0 < float(m.group(2)) <= 0.1


def test_calibrate_tail_command_names_a_floor_above_the_cap():
  """The floor is checked before anything is loaded (the checkpoint need not exist)."""
  out = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "calibrate_tail.py"),
                        "--checkpoint=/nonexistent", "--cap=0.2", "--floor=0.3"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode != 0 and "--floor=0.3 must be in [0, --cap=0.2]" in out.stderr, out.stderr[-2000:]


def ts_settings(**kw):
  from score_jax.rl.train_step import RLSettings
  return RLSettings(**kw)


def test_eval_uses_the_trained_position_mode(tiny_embedded_model, monkeypatch):
  from score_jax import evaluation
  c = smoke_config("/unused", tiny_embedded_model, **{"rl.position_mode": "repacked"})
  method = get_method(c)
  policy = method.make_policy(c)
  llm = load_frozen_llm(c.model, None)
  state = method.init_state(c, policy, optax.sgd(0.0), llm, jax.random.key(0))
  keep = method.keep_fn(c, policy, state.params)
  assert keep.position_mode == "repacked"
  seen = []
  real = evaluation.answer_fn

  def spy(llm_):
    answer = real(llm_)

    def call(*args, position_mode="original", **kw):
      seen.append(position_mode)
      return answer(*args, position_mode=position_mode, **kw)
    return call
  monkeypatch.setattr(evaluation, "answer_fn", spy)
  evaluation.evaluate_methods(llm, lambda: train_lib.heldout_batches(c, llm), (1.0, 0.25), ["random"],
                              {"score": keep}, 1, 0)
  # full tokens and the baseline keep original positions; the policy's prefill uses its own
  assert seen.count("repacked") >= 1 and "original" in seen


def test_world_reports_break_accuracy_down_by_question_type(tiny_embedded_model, tmp_path):
  """Held-out world batches carry ids and question types; the report has a per-type table whose
  counts and accuracies agree with the per-sample results."""
  from score_jax import evaluation
  from score_jax.world.sources import WorldSource
  from score_jax.world.generator import WorldConfig
  c = smoke_config(str(tmp_path / "w"), tiny_embedded_model, **{"eval.samples": 24, "eval.sets": ("clean",)})
  llm = load_frozen_llm(c.model, None)
  results = train_lib.evaluate_and_report(c, llm, {}, ["random"], (1.0, 0.25), str(tmp_path / "r"))["clean"]
  (group,) = results["_by_category"]
  assert (group["task"], group["field"]) == ("world", "question_type")
  src = WorldSource(WorldConfig(), kind="video", split="heldout", size=24)
  types = [str(src[i]["question_type"]) for i in range(24)]
  assert group["n"] == {"all": 24, **{t: types.count(t) for t in set(types)}}
  full = results["_per_sample"][("full", 1.0)]
  for t in set(types):
    ids = [f"world:{i}" for i in range(24) if types[i] == t]
    assert group["accuracy"][("full", 1.0)][t] == pytest.approx(sum(full[i] for i in ids) / len(ids))
  assert group["accuracy"][("full", 1.0)]["all"] == pytest.approx(results[("full", 1.0)])
  assert "### world: accuracy by question_type" in open(tmp_path / "r" / "eval.md").read()
  assert evaluation.results_to_json(results)["by_category"][0]["field"] == "question_type"


def test_score_dedup_keeps_still_places_last_in_both_modes(tiny_embedded_model):
  """score_eval.dedup: tokens at places still since frame 0 come after every other token (earliest frame
  first) in `fixed` and `adaptive` inference; the adaptive counts stay the tail rule's on the keep logits."""
  import jax.numpy as jnp
  from score_jax.compress.surprise import still_places
  from score_jax.rl.train_step import policy_logits
  c = smoke_config("/unused", tiny_embedded_model)
  method = get_method(c)
  policy = method.make_policy(c)
  llm = load_frozen_llm(c.model, None)
  state = method.init_state(c, policy, optax.sgd(0.0), llm, jax.random.key(0))
  t, p, d = llm.num_frames, llm.cfg.tokens_per_frame, llm.cfg.text.hidden_size
  n = t * p
  rng = np.random.default_rng(4)
  visual = np.repeat(rng.normal(size=(2, 1, p, d)), t, axis=1).astype(np.float32)  # still videos
  visual[:, t // 2:, :2] = rng.normal(size=(2, 1, 2, d))  # two places change halfway and stay changed
  repeated = np.asarray(still_places(jnp.asarray(visual), 0.95)).reshape(2, n)
  new = (~repeated).sum(-1)
  assert (new == p + 2 * (t - t // 2)).all()
  logits = np.asarray(policy_logits(policy, state.params, visual))
  plain = np.asarray(method.keep_fn(c, policy, state.params).select({"visual": visual}, n // 4))
  assert repeated[np.arange(2)[:, None], plain].any()  # without the rule, the policy keeps repeats
  c.score_eval.dedup = 0.95
  keep = method.keep_fn(c, policy, state.params)
  for k in (int(new[0]) - 3, int(new[0]) + p // 2):
    got = np.asarray(keep.select({"visual": visual}, k))
    for b in range(2):
      fresh = np.flatnonzero(~repeated[b])
      want_new = fresh[np.argsort(-logits[b, fresh], kind="stable")[:k]]  # the best new tokens first
      assert set(want_new) <= set(got[b])
      extra = sorted(set(got[b]) - set(fresh))
      assert len(extra) == max(k - len(fresh), 0)
      assert all(i // p == 1 for i in extra)  # then repeats of frame 1, the earliest still frame
  c.score_eval.tail, c.score_eval.cap = 0.5, 0.5
  idx, valid = method.keep_fn(c, policy, state.params).adaptive({"visual": visual}, n)
  c.score_eval.dedup = 0.0
  _, valid_plain = method.keep_fn(c, policy, state.params).adaptive({"visual": visual}, n)
  np.testing.assert_array_equal(np.asarray(valid).sum(-1), np.asarray(valid_plain).sum(-1))
  counts = np.asarray(valid).sum(-1)
  for b in range(2):
    kept = np.asarray(idx)[b][np.asarray(valid)[b]]
    assert repeated[b, kept].sum() == max(counts[b] - new[b], 0)
  c.score_eval.dedup = 1.5
  with pytest.raises(ValueError, match="score_eval.dedup"):
    method.keep_fn(c, policy, state.params)
