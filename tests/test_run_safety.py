"""Nothing lost, nothing silently wrong: workdir ledger, checkpoint fallback, NaN guard, SIGTERM, kill -9."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax import checkpointing, run_ledger
from score_jax import eval as eval_lib
from score_jax import train as train_lib
from score_jax.methods import score as score_method
from score_jax.testing.smoke import REPO, experiment_config, smoke_config
from score_jax.testing.files import tree_digest


def assert_same_params(a, b):
  jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def checkpoint_steps(workdir) -> list[int]:
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


@pytest.fixture()
def finished_run(uninterrupted, tmp_path):
  """A private copy of the finished smoke run's workdir (steps 4 and 6 kept)."""
  workdir = tmp_path / "run"
  shutil.copytree(uninterrupted[0], workdir)
  return workdir


def test_rejected_and_different_runs_leave_the_good_run_intact(finished_run, tiny_embedded_model):
  before = tree_digest(finished_run)
  with pytest.raises(ValueError, match="rl.ratio"):
    train_lib.train(smoke_config(finished_run, tiny_embedded_model, **{"rl.ratio": 0.0}))
  with pytest.raises(run_ledger.WorkdirError, match=r"rl.comp_weight: 0.5 \(saved\) -> 0.9 \(now\)"):
    train_lib.train(smoke_config(finished_run, tiny_embedded_model, **{"rl.comp_weight": 0.9}))
  assert tree_digest(finished_run) == before


def test_a_rejected_first_run_writes_nothing(tiny_embedded_model, tmp_path):
  for bad in ({"checkpoint_every": 0}, {"eval.ratios": (0.0,)}, {"log_every": -1},
              {"eval.source": "jsonl", "data.eval_file": "x.jsonl"}, {"curriculum": "jsonl:3"}):
    with pytest.raises(ValueError):
      train_lib.train(smoke_config(tmp_path / "new", tiny_embedded_model, **bad))
    assert not (tmp_path / "new").exists(), bad


def test_allowed_change_is_recorded_and_used_by_eval(finished_run, tiny_embedded_model):
  saved = (finished_run / "config.json").read_bytes()
  out = train_lib.train(smoke_config(finished_run, tiny_embedded_model, **{"rl.comp_weight": 0.9,
                                                                           "eval.at_end": False}),
                        allow_changes=("rl.comp_weight",))
  assert out["final_step"] == 6
  assert (finished_run / "config.json").read_bytes() == saved  # the run's record is never rewritten
  last = run_ledger.read_history(str(finished_run))[-1]
  assert last["event"] == "resume" and last["changes"]["rl.comp_weight"] == [0.5, 0.9]
  assert last["changes"]["eval.at_end"] == [True, False]
  assert run_ledger.effective_config(str(finished_run)).rl.comp_weight == 0.9


def test_iterator_states_are_checked_against_the_stages(finished_run, tiny_embedded_model):
  config = smoke_config(finished_run, tiny_embedded_model, curriculum="pseudo:3,video:3,pseudo:2")
  with pytest.raises(ValueError, match=r"data-iterator positions for stages \['pseudo', 'video'\]"):
    train_lib.train(config, allow_changes=("curriculum",))
  assert checkpoint_steps(finished_run) == [4, 6]


def test_damaged_newest_checkpoint_resumes_from_the_one_before(finished_run, uninterrupted, tiny_embedded_model,
                                                               caplog):
  for root, _, files in os.walk(finished_run / "checkpoints" / "6" / "state"):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
  caplog.set_level("WARNING")
  out = train_lib.train(smoke_config(finished_run, tiny_embedded_model, **{"eval.at_end": False}))
  assert "Skipping checkpoint step 6" in caplog.text
  assert out["final_step"] == 6 and checkpoint_steps(finished_run) == [4, 6]
  assert len(os.listdir(finished_run / checkpointing.DAMAGED)) == 1
  assert_same_params(out["params"], uninterrupted[1]["params"])


def _inject(monkeypatch, at_call: int, action):
  """Makes the SCORE train step apply `action(state)` from its `at_call`-th call (1-based) on."""
  original = score_method.make_train_step

  def make(*args, **kwargs):
    step, calls = original(*args, **kwargs), [0]

    def wrapped(state, batch, key, llm_params):
      state, metrics = step(state, batch, key, llm_params)
      calls[0] += 1
      return (action(state), metrics) if calls[0] >= at_call else (state, metrics)
    return wrapped
  monkeypatch.setattr(score_method, "make_train_step", make)


def test_nan_state_is_never_checkpointed(tiny_embedded_model, tmp_path, monkeypatch):
  poison = lambda s: s.replace(params=jax.tree_util.tree_map(lambda x: x * jnp.nan, s.params))  # noqa: E731
  _inject(monkeypatch, 3, poison)
  config = smoke_config(tmp_path, tiny_embedded_model, log_every=5, checkpoint_every=1)
  with pytest.raises(FloatingPointError, match="at step 3.*newest checkpoint is step 2"):
    train_lib.train(config)
  assert checkpoint_steps(tmp_path) == [1, 2]
  monkeypatch.undo()
  state = checkpointing.restore_latest(str(tmp_path), _abstract_state(config, tiny_embedded_model))
  assert state[0] == 2 and bool(checkpointing.all_finite(state[1]))


def _abstract_state(config, checkpoint):
  from score_jax.frozen_llm import load_frozen_llm
  from score_jax.methods import get_method
  import orbax.checkpoint as ocp
  llm = load_frozen_llm(config.model, None)
  method = get_method(config)
  policy = method.make_policy(config)
  state = method.init_state(config, policy, train_lib.make_optimizer(config, 6), llm, jax.random.key(0))
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)


def test_error_in_the_loop_is_the_one_shown_and_pending_saves_finish(tiny_embedded_model, tmp_path, monkeypatch):
  def fail(state):
    raise RuntimeError("injected failure in step 3")
  _inject(monkeypatch, 3, fail)
  with pytest.raises(RuntimeError, match="injected failure in step 3"):
    train_lib.train(smoke_config(tmp_path, tiny_embedded_model, checkpoint_every=1))
  assert checkpoint_steps(tmp_path) == [1, 2]
  assert not [d for d in os.listdir(tmp_path / "checkpoints") if "tmp" in d]  # the async save of step 2 finished


def _train_cmd(workdir, checkpoint, *overrides):
  return [sys.executable, "-m", "score_jax.train", f"--config={REPO}/experiments/smoke.py",
          f"--config.workdir={workdir}", f"--config.model.checkpoint={checkpoint}", "--config.model.mesh=(1,1,1)",
          "--config.eval.at_end=False", *overrides]


class _Output:
  """Collects a child's stderr in a thread (tqdm's progress included) so the test can watch it."""

  def __init__(self, proc):
    self.text = ""
    self._t = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
    self._t.start()

  def _read(self, stream):
    for chunk in iter(lambda: stream.read(256), ""):
      self.text += chunk

  def wait_for(self, pattern: str, timeout: float) -> bool:
    import re
    deadline = time.time() + timeout
    while time.time() < deadline:
      if re.search(pattern, self.text):
        return True
      time.sleep(0.05)
    return False


def test_sigterm_saves_the_interrupted_step_and_the_relaunch_resumes_exactly(tiny_embedded_model, tmp_path):
  overrides = {"curriculum": "pseudo:3,video:60", "checkpoint_every": 1000, "eval.at_end": False}
  workdir = tmp_path / "interrupted"
  proc = subprocess.Popen(_train_cmd(workdir, tiny_embedded_model, "--config.curriculum=pseudo:3,video:60",
                                     "--config.checkpoint_every=1000"),
                          cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
  out = _Output(proc)
  assert out.wait_for(r"train:.*\b([5-9]|[1-5][0-9])/63", 300), out.text[-3000:]
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(120) == 128 + signal.SIGTERM, out.text[-3000:]
  time.sleep(0.2)
  import re
  stopped = int(re.search(r"Stopped by SIGTERM after step (\d+)", out.text).group(1))
  assert 5 <= stopped < 63 and checkpoint_steps(workdir) == [stopped]  # no periodic save would be there
  resumed = train_lib.train(smoke_config(workdir, tiny_embedded_model, **overrides))
  full = train_lib.train(smoke_config(tmp_path / "full", tiny_embedded_model, **overrides))
  assert resumed["final_step"] == full["final_step"] == 63
  assert_same_params(resumed["params"], full["params"])


@pytest.mark.slow  # ~70 s: two subprocess trainings; SIGTERM resume and killed-run resume stay in the default run
def test_kill_9_during_async_checkpoint_writes_then_finish_equals_uninterrupted(uninterrupted, tiny_embedded_model,
                                                                                 tmp_path):
  """Several `kill -9` at random moments while an asynchronous save is in flight (a temporary step
  folder exists), each relaunch resuming from what survived; the clean finish is bit-identical."""
  rng = random.Random(0)
  workdir = tmp_path / "killed"
  ckpt_dir = workdir / "checkpoints"
  kills = 0

  def temporaries() -> set:
    return {(e.name, e.inode()) for e in os.scandir(ckpt_dir) if "tmp" in e.name} if ckpt_dir.is_dir() else set()
  for _ in range(6):
    stale = temporaries()  # left by the last kill; the relaunch cleans them up
    proc = subprocess.Popen(_train_cmd(workdir, tiny_embedded_model, "--config.checkpoint_every=1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay = rng.uniform(0.0, 0.05)
    while proc.poll() is None:
      if temporaries() - stale:
        time.sleep(delay)
        proc.kill()
        kills += 1
        break
      time.sleep(0.001)
    proc.wait(120)
    if proc.returncode == 0 or kills == 3:
      break
  assert kills >= 2
  done = train_lib.train(smoke_config(workdir, tiny_embedded_model, checkpoint_every=1, **{"eval.at_end": False}))
  assert done["final_step"] == 6
  assert_same_params(done["params"], uninterrupted[1]["params"])


def test_eval_writes_a_folder_of_its_own_and_never_overwrites(uninterrupted, tiny_embedded_model, tmp_path):
  workdir = uninterrupted[0]
  before = tree_digest(workdir)
  config = smoke_config(tmp_path / "unused", tiny_embedded_model, **{"eval.methods": ("uniform_pool",)})
  eval_lib.run(config, [str(workdir)])
  after = tree_digest(workdir)
  new = {k for k in after if k not in before}
  assert new and all(k.startswith("evals" + os.sep) for k in new)
  assert {k: after[k] for k in before} == before  # the training run's eval.md/csv/json/png untouched
  out = tmp_path / "mine"
  out.mkdir()
  (out / "eval.md").write_text("my notes")
  with pytest.raises(eval_lib.EvalOutputError, match="already holds"):
    eval_lib.run(config, [str(workdir)], out=str(out))
  assert (out / "eval.md").read_text() == "my notes"
  with pytest.raises(ValueError, match="--ratios"):
    eval_lib.run(config, [str(workdir)], ratios=["0"], out=str(tmp_path / "x"))
  with pytest.raises(ValueError, match="oracle"):
    eval_lib.run(smoke_config(tmp_path, tiny_embedded_model, **{"eval.source": "jsonl", "data.eval_file": "x"}),
                 [str(workdir)], methods=["random", "oracle"], out=str(tmp_path / "y"))


@pytest.mark.parametrize("name", ["curriculum", "smoke", "cacovid", "cacovid_smoke", "llava_ov_7b", "llava_ov_0_5b"])
def test_every_config_carries_the_data_keys(name):
  c = experiment_config(name)
  for key in ("train_file", "eval_file", "image_file", "cache_dir", "strict", "cache_batch_size", "decode_threads"):
    assert key in c.data, (name, key)


def test_cli_reports_bad_values_in_one_line(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "score_jax.train", f"--config={REPO}/experiments/smoke.py",
                         f"--config.workdir={tmp_path / 'w'}", "--config.checkpoint_every=0"],
                        cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert "error: config.checkpoint_every=0 must be a positive integer." in proc.stderr
  assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_nonfinite_paths_name_the_bad_leaves():
  import jax.numpy as jnp
  tree = {"head": {"bias": jnp.array([0.0, jnp.nan]), "kernel": jnp.ones(2)}, "step": jnp.int32(3),
          "layers": [jnp.array([jnp.inf]), jnp.zeros(1)]}
  assert checkpointing.nonfinite_paths(tree) == ["['head']['bias']", "['layers'][0]"]
  many = {f"w{i}": jnp.array([jnp.nan]) for i in range(7)}
  assert checkpointing.nonfinite_paths(many, limit=5)[-1] == "... 2 more"
  assert checkpointing.nonfinite_paths({"ok": jnp.ones(3)}) == []
