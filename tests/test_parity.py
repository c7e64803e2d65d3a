"""Parity of score_jax's JAX models with the transformers (PyTorch) reference on tiny random models."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from score_jax.models import hf_loading, prefill  # noqa: E402
from score_jax.testing import hf_reference as ref  # noqa: E402

TOL = 1e-4
PREFIX, SUFFIX = [3, 7, 11], [20, 21, 22, 23, 24]


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("llava"))
  hf = ref.save_random_model(transformers.LlavaOnevisionForConditionalGeneration, ref.tiny_llava_config(),
                             folder)
  cfg, module, params = hf_loading.load_llava_onevision(folder)
  return hf, cfg, module, params


def _video(batch=2, frames=3, size=28, seed=0):
  return np.random.default_rng(seed).normal(size=(batch, frames, size, size, 3)).astype(np.float32)


def _torch_video(x):
  return torch.tensor(x).permute(0, 1, 4, 2, 3)


def test_video_tokens_match_hf(llava):
  hf, cfg, module, params = llava
  video = _video()
  ours = np.asarray(prefill.encode_video(module, params, jnp.asarray(video)))
  with torch.no_grad():
    theirs = hf.model.get_video_features(_torch_video(video)).pooler_output.numpy()
  assert ours.shape == (2, 3, 16, cfg.text.hidden_size)  # 7x7 patches pooled to 4x4
  np.testing.assert_allclose(theirs[:, :-1].reshape(ours.shape), ours, atol=TOL, rtol=0)
  np.testing.assert_allclose(theirs[:, -1], np.broadcast_to(np.asarray(params["image_newline"]),
                                                            (2, cfg.text.hidden_size)), atol=TOL)


def _hf_full_logits(hf, cfg, video):
  n = video.shape[1] * cfg.tokens_per_frame + 1
  ids = torch.tensor([PREFIX + [cfg.video_token_id] * n + SUFFIX] * video.shape[0])
  with torch.no_grad():
    return hf(input_ids=ids, pixel_values_videos=_torch_video(video)).logits.numpy()


def test_full_sequence_logits_match_hf(llava):
  hf, cfg, module, params = llava
  video = _video()
  theirs = _hf_full_logits(hf, cfg, video)
  visual = prefill.encode_video(module, params, jnp.asarray(video))
  b, n = 2, visual.shape[1] * visual.shape[2]
  inputs = prefill.assemble_inputs(module, params, visual, prefill.all_keep_indices(b, n),
                                   jnp.asarray([PREFIX] * b), jnp.asarray([SUFFIX] * b),
                                   jnp.full((b,), len(SUFFIX)))
  hidden = prefill.decode(module, params, inputs)
  ours = np.asarray(module.apply({"params": params}, hidden, method=type(module).logits))
  assert ours.shape == theirs.shape
  np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=0)


def test_prefill_logits_with_right_padded_suffix(llava):
  """Each sample's answer-position logits equal HF's, though suffixes of different lengths share a batch."""
  hf, cfg, module, params = llava
  video = _video(seed=1)
  visual = prefill.encode_video(module, params, jnp.asarray(video))
  n = visual.shape[1] * visual.shape[2]
  suffix = np.asarray([SUFFIX, SUFFIX[:3] + [0, 0]])
  got = np.asarray(prefill.prefill_logits(module, params, visual, prefill.all_keep_indices(2, n),
                                          jnp.asarray([PREFIX] * 2), jnp.asarray(suffix), jnp.asarray([5, 3])))
  for i, length in enumerate([5, 3]):
    ids = torch.tensor([PREFIX + [cfg.video_token_id] * (n + 1) + list(suffix[i, :length])])
    with torch.no_grad():
      want = hf(input_ids=ids, pixel_values_videos=_torch_video(video[i:i + 1])).logits[0, -1].numpy()
    np.testing.assert_allclose(got[i], want, atol=TOL, rtol=0)


@pytest.mark.parametrize("position_mode", ["original", "repacked"])
def test_kept_subset_matches_hf_fed_same_subset(llava, position_mode):
  hf, cfg, module, params = llava
  video = _video(seed=2)
  visual = prefill.encode_video(module, params, jnp.asarray(video))
  b, n = 2, visual.shape[1] * visual.shape[2]
  rng = np.random.default_rng(3)
  keep = np.sort(np.stack([rng.choice(n, 10, replace=False) for _ in range(b)]), axis=1)
  got = np.asarray(prefill.prefill_logits(module, params, visual, jnp.asarray(keep), jnp.asarray([PREFIX] * b),
                                          jnp.asarray([SUFFIX] * b), jnp.full((b,), len(SUFFIX)),
                                          position_mode=position_mode))
  with torch.no_grad():
    feats = hf.model.get_video_features(_torch_video(video)).pooler_output  # [B, n + 1, d]
    embed = hf.get_input_embeddings()
    lp = len(PREFIX)
    for i in range(b):
      sub = torch.cat([feats[i, torch.tensor(keep[i])], feats[i, -1:]], dim=0)
      x = torch.cat([embed(torch.tensor(PREFIX)), sub, embed(torch.tensor(SUFFIX))], dim=0)[None]
      if position_mode == "original":
        pos = list(range(lp)) + [lp + j for j in keep[i]] + [lp + n] + [lp + n + 1 + j for j in range(len(SUFFIX))]
      else:
        pos = list(range(x.shape[1]))
      want = hf(inputs_embeds=x, position_ids=torch.tensor([pos])).logits[0, -1].numpy()
      np.testing.assert_allclose(got[i], want, atol=TOL, rtol=0)
  if position_mode == "original":  # a subset really is a different input than the full video
    full = prefill.prefill_logits(module, params, visual, prefill.all_keep_indices(b, n),
                                  jnp.asarray([PREFIX] * b), jnp.asarray([SUFFIX] * b), jnp.full((b,), 5))
    assert np.abs(np.asarray(full) - got).max() > 1e-3


def test_invalid_keep_slots_are_ignored(llava):
  """Padded (invalid) slots of a variable-size keep set change nothing at the answer position."""
  _, _, module, params = llava
  visual = prefill.encode_video(module, params, jnp.asarray(_video(seed=4)))
  b = 2
  args = (jnp.asarray([PREFIX] * b), jnp.asarray([SUFFIX] * b), jnp.full((b,), 5))
  keep = jnp.asarray([[1, 5, 9, 30], [2, 3, 40, 41]])
  short = prefill.prefill_logits(module, params, visual, keep[:, :3], *args, position_mode="repacked")
  padded = prefill.prefill_logits(module, params, visual, keep.at[:, 3].set(0), *args,
                                  keep_valid=jnp.asarray([[True] * 3 + [False]] * b), position_mode="repacked")
  np.testing.assert_allclose(np.asarray(short), np.asarray(padded), atol=TOL)


@pytest.mark.parametrize("tied", [False, True])
def test_qwen2_logits_match_hf(tmp_path, tied):
  folder = str(tmp_path)
  hf = ref.save_random_model(transformers.Qwen2ForCausalLM, ref.tiny_qwen2_config(tie_word_embeddings=tied),
                             folder)
  cfg, module, params = hf_loading.load_qwen2(folder)
  assert ("lm_head" in params) != tied
  ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 9))
  with torch.no_grad():
    theirs = hf(input_ids=torch.tensor(ids), output_hidden_states=True)
  pos = jnp.broadcast_to(jnp.arange(9), (2, 9))
  hidden = module.apply({"params": params}, module.apply({"params": params}, jnp.asarray(ids),
                                                         method=type(module).embed), pos)
  np.testing.assert_allclose(np.asarray(hidden), theirs.hidden_states[-1].numpy(), atol=TOL, rtol=0)
  logits = module.apply({"params": params}, hidden, method=type(module).logits)
  np.testing.assert_allclose(np.asarray(logits), theirs.logits.numpy(), atol=TOL, rtol=0)


def test_siglip_hidden_states_match_hf(tmp_path):
  folder = str(tmp_path)
  hf = ref.save_random_model(transformers.SiglipVisionModel, ref.tiny_siglip_config(image_size=32), folder)
  cfg, module, params = hf_loading.load_siglip_vision(folder)
  images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    theirs = hf(pixel_values=torch.tensor(images).permute(0, 3, 1, 2)).last_hidden_state.numpy()
  ours = np.asarray(module.apply({"params": params}, jnp.asarray(images)))
  np.testing.assert_allclose(ours, theirs, atol=TOL, rtol=0)


def test_earlier_vision_feature_layer(tmp_path):
  """vision_feature_layer=-2 reads the second-to-last SigLIP layer, as transformers does."""
  folder = str(tmp_path)
  hf = ref.save_random_model(transformers.LlavaOnevisionForConditionalGeneration,
                             ref.tiny_llava_config(vision_feature_layer=-2), folder)
  cfg, module, params = hf_loading.load_llava_onevision(folder)
  assert jax.tree_util.tree_leaves(params["vision_tower"]["layers"])[0].shape[0] == 2
  video = _video(batch=1, frames=2)
  ours = np.asarray(prefill.encode_video(module, params, jnp.asarray(video)))
  with torch.no_grad():
    theirs = hf.model.get_video_features(_torch_video(video)).pooler_output.numpy()
  np.testing.assert_allclose(theirs[:, :-1].reshape(ours.shape), ours, atol=TOL, rtol=0)
