"""The embedded-model build writes only folders it made, and only whole ones: a foreign folder is
refused untouched, a crash mid-save leaves the target as it was, a rebuild swaps the folder in."""
import json
import os
import re
import shutil

import ml_collections
import numpy as np
import pytest

from score_jax import frozen_llm
from score_jax.embedded import base_model, world_text
from score_jax.models import hf_loading, hf_saving
from score_jax.models.safetensors_io import save_safetensors
from score_jax.testing.files import tree_digest

TINY = base_model.BaseModelSettings(steps=2, vision_steps=2, batch_size=4, eval_samples=8)


def _fake_hf_folder(folder):
  os.makedirs(folder)
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump({"model_type": "llava_onevision", "architectures": ["LlavaOnevisionForConditionalGeneration"]}, f)
  save_safetensors({"model.language_model.embed_tokens.weight": np.arange(12, dtype=np.float32).reshape(3, 4)},
                   os.path.join(folder, "model.safetensors"))
  return str(folder)


# A real tiny build (~70 s on 2 cores) behind these tests: slow, to keep the default run under 15 minutes; the
# refusals of foreign folders and the replay need no build and stay in the default run.
BUILDS = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """A real tiny build into a folder that does not exist yet (nor does its parent)."""
  folder = str(tmp_path_factory.mktemp("build") / "new" / "embedded")
  info = base_model.build_base_model(folder, TINY, progress=False)
  return folder, info


@pytest.fixture(scope="module")
def trained(built):
  """What `train_base_model` returned for `built`, read back from the folder (to skip training)."""
  folder, info = built
  cfg, _, params = hf_loading.load_llava_onevision(folder)
  return cfg, params, world_text.WorldText.from_folder(folder).tokenizer, info


@pytest.fixture
def no_training(monkeypatch, trained):
  monkeypatch.setattr(base_model, "train_base_model", lambda settings, progress=True: trained)


@BUILDS
def test_build_into_a_new_path(built):
  folder, info = built
  assert {"build_info.json", "config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(folder))
  assert base_model.read_build_info(folder) == json.loads(json.dumps(info)) and base_model.is_current(folder)
  assert os.listdir(os.path.dirname(folder)) == ["embedded"]  # no temporary folder left beside it
  mask = os.umask(0)
  os.umask(mask)
  assert os.stat(folder).st_mode & 0o777 == 0o777 & ~mask  # not mkdtemp's 0700
  hf_loading.load_llava_onevision(folder)


@pytest.mark.parametrize("call", ["ensure_base_model", "build_base_model"])
def test_hugging_face_folder_is_refused_and_left_byte_identical(tmp_path, call):
  folder = _fake_hf_folder(tmp_path / "downloaded")
  before = tree_digest(folder)
  with pytest.raises(base_model.BuildFolderError,
                     match=re.escape(repr(folder)) + r".*no build_info\.json\. It looks like a Hugging Face "
                     r"checkpoint; to use it as the frozen LLM set --config\.model\.kind=hf\."):
    getattr(base_model, call)(folder, TINY, progress=False)
  assert tree_digest(folder) == before
  assert os.listdir(tmp_path) == ["downloaded"]


def test_embedded_kind_with_a_hugging_face_checkpoint_names_kind_hf(tmp_path):
  folder = _fake_hf_folder(tmp_path / "downloaded")
  before = tree_digest(folder)
  model = ml_collections.ConfigDict({"kind": "embedded", "checkpoint": folder, "dtype": "float32"})
  with pytest.raises(base_model.BuildFolderError, match=r"--config\.model\.kind=hf"):
    frozen_llm.load_frozen_llm(model, mesh=None)
  assert tree_digest(folder) == before


def test_other_foreign_folder_is_refused_without_the_hf_hint(tmp_path):
  os.makedirs(tmp_path / "notes")
  (tmp_path / "notes" / "todo.txt").write_text("mine")
  with pytest.raises(base_model.BuildFolderError, match=r"holds files it did not make \(todo\.txt\)") as e:
    base_model.build_base_model(str(tmp_path / "notes"), TINY, progress=False)
  assert "kind=hf" not in str(e.value)
  assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def _fail_mid_save(folder, *args, **kwargs):
  with open(os.path.join(folder, "model.safetensors"), "wb") as f:
    f.write(b"half")
  raise RuntimeError("disk full")


@BUILDS
def test_interrupted_build_leaves_no_folder(tmp_path, monkeypatch, no_training):
  monkeypatch.setattr(hf_saving, "save_llava_onevision", _fail_mid_save)
  with pytest.raises(RuntimeError, match="disk full"):
    base_model.build_base_model(str(tmp_path / "new"), TINY, progress=False)
  assert os.listdir(tmp_path) == []  # neither the target nor a temporary folder


@BUILDS
def test_interrupted_rebuild_keeps_the_earlier_build(tmp_path, monkeypatch, built, no_training):
  folder = shutil.copytree(built[0], tmp_path / "old")
  before = tree_digest(folder)
  monkeypatch.setattr(hf_saving, "save_llava_onevision", _fail_mid_save)
  with pytest.raises(RuntimeError, match="disk full"):
    base_model.build_base_model(str(folder), TINY, progress=False)
  assert tree_digest(folder) == before
  assert os.listdir(tmp_path) == ["old"]


@BUILDS
def test_stale_build_is_replaced_whole(tmp_path, built, no_training):
  folder = str(shutil.copytree(built[0], tmp_path / "old"))
  info = base_model.read_build_info(folder)
  with open(os.path.join(folder, base_model.BUILD_INFO), "w") as f:
    json.dump(dict(info, world_version="stale"), f)
  with open(os.path.join(folder, "leftover.txt"), "w") as f:
    f.write("from the earlier build")
  assert base_model.ensure_base_model(folder, TINY, progress=False) == folder
  assert base_model.is_current(folder) and not os.path.exists(os.path.join(folder, "leftover.txt"))
  assert os.listdir(tmp_path) == ["old"]  # the earlier build, moved aside, is deleted


@BUILDS
def test_empty_existing_folder_is_built_into(tmp_path, no_training):
  os.makedirs(tmp_path / "empty")
  base_model.build_base_model(str(tmp_path / "empty"), TINY, progress=False)
  assert base_model.is_current(str(tmp_path / "empty"))
  assert os.listdir(tmp_path) == ["empty"]


@BUILDS
def test_current_build_is_used_as_is(built, monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError("rebuilt a current folder")
  monkeypatch.setattr(base_model, "train_base_model", fail)
  before = tree_digest(built[0])
  assert base_model.ensure_base_model(built[0], TINY, progress=False) == built[0]
  assert tree_digest(built[0]) == before


def test_replay_rebuilds_a_recorded_chain_of_builds(tmp_path, monkeypatch):
  """`--replay` reads a build's chain of `continued_from` settings and builds each link from the previous
  one, oldest first; a rerun reuses the links already built."""
  import dataclasses
  first = dataclasses.replace(TINY, steps=3, init_from="")
  second = dataclasses.replace(TINY, steps=5, object_fraction=0.3, init_from="/elsewhere/first")
  info = {"world_version": world_text.WORLD_VERSION, "settings": dataclasses.asdict(second),
          "continued_from": {"settings": json.loads(json.dumps(dataclasses.asdict(first)))}}
  assert base_model.recipe(info) == [first, second]
  calls = []

  def fake_build(out_dir, settings, progress=True):
    calls.append((out_dir, settings))
    done = {"world_version": world_text.WORLD_VERSION, "settings": dataclasses.asdict(settings)}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, base_model.BUILD_INFO), "w") as f:
      json.dump(done, f)
    return done

  monkeypatch.setattr(base_model, "build_base_model", fake_build)
  out = str(tmp_path / "replayed")
  base_model.replay_build(out, info, progress=False)
  assert calls == [(out + ".link0", first), (out, dataclasses.replace(second, init_from=out + ".link0"))]
  calls.clear()
  shutil.rmtree(out)  # as if the last link had been interrupted: the first one is not rebuilt
  base_model.replay_build(out, info, progress=False)
  assert [c[0] for c in calls] == [out]
  calls.clear()
  shutil.rmtree(out + ".link0")  # a rebuilt link: every later one continues it, so it is rebuilt too
  base_model.replay_build(out, info, progress=False)
  assert [c[0] for c in calls] == [out + ".link0", out]
  bad = dict(info, settings=dict(info["settings"], finder_layer=2))
  with pytest.raises(ValueError, match="finder_layer"):
    base_model.recipe(bad)
  older = {k: v for k, v in info["settings"].items() if k != "tie_words"}  # a field the recorded build lacked
  with pytest.raises(ValueError, match="missing: \\['tie_words'\\]"):
    base_model.recipe(dict(info, settings=older))


def test_first_use_build_replays_the_shipped_recipe(tmp_path, monkeypatch):
  """Without explicit settings, a stale or missing embedded model is rebuilt with the recipe recorded in
  the shipped copy's build_info.json (every link of its chain), not with bare defaults."""
  calls = []
  monkeypatch.setattr(base_model, "replay_build", lambda out, info, progress=True: calls.append((out, info)) or {})
  folder = str(tmp_path / "cache" / "embedded")
  assert base_model.ensure_base_model(folder, progress=False) == folder
  assert calls == [(folder, base_model.read_build_info(base_model.SHIPPED_DIR))]
  chain = base_model.recipe(calls[0][1])
  assert len(chain) >= 2 and chain[0].init_from == "" and chain[-1].object_fraction > 0
