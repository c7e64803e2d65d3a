"""Checkpoint loading: sharded placement, bfloat16 files, and clear errors for bad checkpoints."""
import json
import os
import shutil

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from score_jax.models import hf_loading  # noqa: E402
from score_jax.models import sharding as shd  # noqa: E402
from score_jax.models.configs import ConfigError  # noqa: E402
from score_jax.models.safetensors_io import CheckpointError, SafetensorsFolder, save_safetensors  # noqa: E402
from score_jax.testing import hf_reference as ref  # noqa: E402


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("llava"))
  ref.save_random_model(transformers.LlavaOnevisionForConditionalGeneration, ref.tiny_llava_config(), folder)
  return folder


def _copy(src, dst):
  shutil.copytree(src, dst)
  return str(dst)


def test_load_straight_onto_2x4_mesh(llava_folder):
  mesh = shd.make_mesh((2, 1, 4), devices=jax.devices()[:8])
  _, _, single = hf_loading.load_llava_onevision(llava_folder)
  _, _, multi = hf_loading.load_llava_onevision(llava_folder, mesh=mesh)
  q = multi["language_model"]["layers"]["self_attn"]["q_proj"]["kernel"]
  assert q.sharding.mesh.shape == mesh.shape
  assert q.shape == (2, 48, 48)
  assert {s.data.shape for s in q.addressable_shards} == {(2, 48, 12)}  # heads split 4 ways
  for a, b in zip(jax.tree_util.tree_leaves(single), jax.tree_util.tree_leaves(multi)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_values_and_layouts_match_torch_state_dict(llava_folder):
  _, _, params = hf_loading.load_llava_onevision(llava_folder)
  hf = transformers.LlavaOnevisionForConditionalGeneration.from_pretrained(llava_folder)
  sd = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  lm = params["language_model"]
  np.testing.assert_array_equal(lm["layers"]["mlp"]["gate_proj"]["kernel"][1],
                                sd["model.language_model.layers.1.mlp.gate_proj.weight"].T)
  np.testing.assert_array_equal(params["vision_tower"]["patch_embedding"]["kernel"],
                                sd["model.vision_tower.embeddings.patch_embedding.weight"]
                                .transpose(2, 3, 1, 0))


def test_bfloat16_checkpoint(tmp_path):
  hf = ref.save_random_model(transformers.Qwen2ForCausalLM, ref.tiny_qwen2_config(), str(tmp_path / "f32"))
  hf.to(torch.bfloat16).save_pretrained(str(tmp_path / "bf16"))
  ckpt = SafetensorsFolder(str(tmp_path / "bf16"))
  assert str(ckpt.get("model.norm.weight").dtype) == "bfloat16"
  _, _, params = hf_loading.load_qwen2(str(tmp_path / "bf16"), dtype="bfloat16")
  want = hf.model.embed_tokens.weight.detach().float().numpy()
  got = np.asarray(params["embed_tokens"]["embedding"]).astype(np.float32)
  assert params["embed_tokens"]["embedding"].dtype == jax.numpy.bfloat16
  np.testing.assert_array_equal(got, want)


def test_sharded_checkpoint_with_index(tmp_path):
  hf = ref.save_random_model(transformers.Qwen2ForCausalLM, ref.tiny_qwen2_config(), str(tmp_path / "one"))
  hf.save_pretrained(str(tmp_path / "many"), max_shard_size="20KB")
  assert os.path.exists(tmp_path / "many" / "model.safetensors.index.json")
  _, _, a = hf_loading.load_qwen2(str(tmp_path / "one"))
  _, _, b = hf_loading.load_qwen2(str(tmp_path / "many"))
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_missing_folder():
  with pytest.raises(CheckpointError, match="'/nonexistent/ckpt' does not exist"):
    hf_loading.load_llava_onevision("/nonexistent/ckpt")


def test_missing_config(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  os.remove(os.path.join(folder, "config.json"))
  with pytest.raises(CheckpointError, match="config.json is missing"):
    hf_loading.load_llava_onevision(folder)


def test_missing_tensor_is_named(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  path = os.path.join(folder, "model.safetensors")
  ckpt = SafetensorsFolder(folder)
  tensors = {k: np.array(ckpt.get(k)) for k in ckpt.keys() if k != "language_model.model.layers.1.mlp.up_proj.weight"}
  save_safetensors(tensors, path)
  with pytest.raises(CheckpointError, match=r"language_model\.model\.layers\.1\.mlp\.up_proj\.weight.*missing"):
    hf_loading.load_llava_onevision(folder)


def test_shape_mismatch_names_file_and_tensor(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  cfg_path = os.path.join(folder, "config.json")
  cfg = json.load(open(cfg_path))
  cfg["text_config"]["intermediate_size"] = 80
  json.dump(cfg, open(cfg_path, "w"))
  with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'language_model\.model\.layers\.0\.mlp\."
                                            r"down_proj\.weight' has shape \(48, 96\)"):
    hf_loading.load_llava_onevision(folder)


def test_unsupported_architecture(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  cfg_path = os.path.join(folder, "config.json")
  cfg = json.load(open(cfg_path))
  cfg["text_config"]["model_type"] = "llama"
  json.dump(cfg, open(cfg_path, "w"))
  with pytest.raises(ConfigError, match="Text model 'llama' is not supported"):
    hf_loading.load_llava_onevision(folder)
  cfg["model_type"] = "qwen2_vl"
  json.dump(cfg, open(cfg_path, "w"))
  with pytest.raises(ConfigError, match="Expected model_type 'llava_onevision', got 'qwen2_vl'"):
    hf_loading.load_llava_onevision(folder)


def test_wrong_architecture_checkpoint(tmp_path):
  ref.save_random_model(transformers.Qwen2ForCausalLM, ref.tiny_qwen2_config(), str(tmp_path))
  with pytest.raises(ConfigError, match=r"config\.json: Expected model_type 'llava_onevision', got 'qwen2'"):
    hf_loading.load_llava_onevision(str(tmp_path))


def test_truncated_safetensors(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  path = os.path.join(folder, "model.safetensors")
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size // 2)
  with pytest.raises(CheckpointError, match="truncated"):
    hf_loading.load_llava_onevision(folder)


def test_saved_folder_loads_in_transformers_and_back(tmp_path):
  from score_jax.models import hf_saving, prefill, sharded
  from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
  from score_jax.models.llava_onevision import LlavaOnevision
  cfg = LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=16, patch_size=4),
      text=Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0),
      video_token_id=63, image_token_id=62)
  module = LlavaOnevision(cfg)
  params = sharded.init_llava_params(module, shd.make_mesh((1, 1, 1), devices=jax.devices()[:1]), jax.random.key(3))
  hf_saving.save_llava_onevision(str(tmp_path), cfg, params)
  _, _, again = hf_loading.load_llava_onevision(str(tmp_path))
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(again)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  hf = transformers.LlavaOnevisionForConditionalGeneration.from_pretrained(str(tmp_path)).eval()
  video = np.random.default_rng(0).normal(size=(1, 2, 16, 16, 3)).astype(np.float32)
  n = 2 * cfg.tokens_per_frame
  ids = [1, 2] + [63] * (n + 1) + [5, 6, 7]
  with torch.no_grad():
    want = hf(input_ids=torch.tensor([ids]), pixel_values_videos=torch.tensor(video).permute(0, 1, 4, 2, 3)).logits
  visual = prefill.encode_video(module, params, video)
  got = prefill.prefill_logits(module, params, visual, prefill.all_keep_indices(1, n), np.asarray([[1, 2]]),
                               np.asarray([[5, 6, 7]]), np.asarray([3]))
  np.testing.assert_allclose(np.asarray(got), want[:, -1].numpy(), atol=1e-4)
