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


def _edit_config(folder, edit):
  path = os.path.join(folder, "config.json")
  with open(path) as f:
    cfg = json.load(f)
  edit(cfg)
  with open(path, "w") as f:
    json.dump(cfg, f)


def _add_tensors(folder, extra):
  ckpt = SafetensorsFolder(folder)
  tensors = {k: np.array(ckpt.get(k)) for k in ckpt.keys()}
  save_safetensors({**tensors, **extra}, os.path.join(folder, "model.safetensors"))


def test_config_with_fewer_decoder_layers_than_the_files_is_refused(tmp_path, llava_folder):
  hf_loading.load_llava_onevision(llava_folder)  # the unmodified checkpoint reads every tensor
  folder = _copy(llava_folder, tmp_path / "c")
  _edit_config(folder, lambda c: c["text_config"].update(num_hidden_layers=1))
  with pytest.raises(CheckpointError, match=r"holds 12 tensor\(s\) that no parameter reads: "
                                            r"'language_model\.model\.layers\.1\.input_layernorm\.weight', .*"
                                            r"and 7 more\. Does its config\.json describe"):
    hf_loading.load_llava_onevision(folder)


def test_config_with_fewer_vision_layers_than_the_files_is_refused(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  _edit_config(folder, lambda c: c["vision_config"].update(num_hidden_layers=2))
  with pytest.raises(CheckpointError, match=r"holds 16 tensor\(s\).*'vision_tower\.encoder\.layers\.2\."):
    hf_loading.load_llava_onevision(folder)


def test_qwen2_config_with_fewer_layers_is_refused(tmp_path):
  folder = str(tmp_path)
  ref.save_random_model(transformers.Qwen2ForCausalLM, ref.tiny_qwen2_config(), folder)
  hf_loading.load_qwen2(folder)
  def one_layer(c):
    c["num_hidden_layers"] = 1
    if "layer_types" in c:  # transformers >= 4.53 checks it against num_hidden_layers
      c["layer_types"] = c["layer_types"][:1]
  _edit_config(folder, one_layer)
  with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.input_layernorm\.weight'"):
    hf_loading.load_qwen2(folder)


def test_layers_after_the_vision_feature_layer_may_stay_unread(tmp_path):
  """vision_feature_layer=-2 never runs the last SigLIP layer; one more layer in the files than the
  config says is still an error."""
  folder = str(tmp_path)
  ref.save_random_model(transformers.LlavaOnevisionForConditionalGeneration,
                        ref.tiny_llava_config(vision_feature_layer=-2), folder)
  hf_loading.load_llava_onevision(folder)
  _edit_config(folder, lambda c: c["vision_config"].update(num_hidden_layers=2))
  with pytest.raises(CheckpointError, match=r"'vision_tower\.encoder\.layers\.2\.layer_norm1\.bias'"):
    hf_loading.load_llava_onevision(folder)


def test_unknown_tensor_is_named_and_allow_listed_ones_are_not(tmp_path, llava_folder):
  folder = _copy(llava_folder, tmp_path / "c")
  _add_tensors(folder, {"language_model.model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(6, np.float32)})
  hf_loading.load_llava_onevision(folder)  # a saved RoPE buffer: recomputed, so unused
  _add_tensors(folder, {"language_model.model.extra_norm.weight": np.ones(48, np.float32)})
  with pytest.raises(CheckpointError, match=r"holds 1 tensor\(s\) that no parameter reads: "
                                            r"'language_model\.model\.extra_norm\.weight'\."):
    hf_loading.load_llava_onevision(folder)


def test_vision_side_alone_ignores_the_decoder(tmp_path, llava_folder):
  """A partial load (as feature_cache.VisionEncoder does) checks only the components it reads."""
  from score_jax.models.configs import LlavaOnevisionConfig
  from score_jax.models.llava_onevision import LlavaOnevision
  folder = _copy(llava_folder, tmp_path / "c")
  _edit_config(folder, lambda c: c["text_config"].update(num_hidden_layers=1))
  cfg = hf_loading.parse_config(folder, LlavaOnevisionConfig.from_hf)
  module = LlavaOnevision(cfg)
  shapes = hf_loading.abstract_params(module, *hf_loading.llava_dummy_inputs(cfg), method=LlavaOnevision.init_all)
  vision = {k: shapes[k] for k in ("vision_tower", "multi_modal_projector", "image_newline")}
  params = hf_loading.load_params(folder, vision, hf_loading.LLAVA_COMPONENTS)
  assert set(params) == set(vision)


def test_tied_lm_head_copy_is_accepted_and_a_different_one_refused(tmp_path):
  folder = str(tmp_path)
  hf = ref.save_random_model(transformers.Qwen2ForCausalLM, ref.tiny_qwen2_config(tie_word_embeddings=True), folder)
  embed = hf.model.embed_tokens.weight.detach().numpy()
  _add_tensors(folder, {"lm_head.weight": embed.copy()})
  _, _, params = hf_loading.load_qwen2(folder)
  assert "lm_head" not in params
  _add_tensors(folder, {"lm_head.weight": embed + 1})
  with pytest.raises(CheckpointError, match=r"model\.safetensors: config\.json ties the output layer to the input "
                                            r"embedding \(tie_word_embeddings\), but tensor 'lm_head\.weight' differs"):
    hf_loading.load_qwen2(folder)


def _tiny_full_siglip_config():
  text = transformers.SiglipTextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=4, max_position_embeddings=16, bos_token_id=None,
                                       eos_token_id=None, pad_token_id=0)
  return transformers.SiglipConfig(text_config=text.to_dict(), vision_config=ref.tiny_siglip_config().to_dict())


def test_siglip_vision_from_a_full_siglip_checkpoint(tmp_path):
  """The text tower and the pooling head are not ours to read; a missing vision layer in config is."""
  folder = str(tmp_path / "full")
  ref.save_random_model(transformers.SiglipModel, _tiny_full_siglip_config(), folder)
  cfg, _, params = hf_loading.load_siglip_vision(folder)
  assert cfg.num_hidden_layers == 3 and "post_layernorm" in params
  _, _, params = hf_loading.load_siglip_vision(folder, use_post_layernorm=False)
  assert "post_layernorm" not in params
  _edit_config(folder, lambda c: c["vision_config"].update(num_hidden_layers=2))
  with pytest.raises(CheckpointError, match=r"'vision_model\.encoder\.layers\.2\."):
    hf_loading.load_siglip_vision(folder)
