"""Greedy generation with a KV cache: token-for-token parity with transformers (PyTorch) on a tiny random
LLaVA-OneVision, per-sample stopping, one compilation per shape, and sharded decoding."""
import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from score_jax.models import generate, hf_loading, prefill, sharded  # noqa: E402
from score_jax.models import sharding as shd  # noqa: E402
from score_jax.testing import hf_reference as ref  # noqa: E402

PREFIX = [3, 7, 11]
SUFFIXES = [[20, 21, 22, 23, 24], [30, 31, 32]]  # different lengths: the batch right-pads the second
NEW = 16
NO_STOP = (10 ** 6,)  # a stop id no token can take: all NEW tokens are generated


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("llava_gen"))
  hf = ref.save_random_model(transformers.LlavaOnevisionForConditionalGeneration, ref.tiny_llava_config(),
                             folder)
  cfg, module, params = hf_loading.load_llava_onevision(folder)
  video = np.random.default_rng(0).normal(size=(2, 3, 28, 28, 3)).astype(np.float32)
  visual = prefill.encode_video(module, params, jnp.asarray(video))
  return hf, cfg, module, params, video, visual.reshape(2, -1, visual.shape[-1])


@pytest.fixture(scope="module")
def gen(llava):
  """One jitted generator for the module's tests: each (keep size, length, mode) compiles once."""
  return generate.jit_generate(llava[2])


def _text():
  width = max(map(len, SUFFIXES))
  suffix = np.asarray([s + [0] * (width - len(s)) for s in SUFFIXES], np.int32)
  return (jnp.asarray([PREFIX] * 2, jnp.int32), jnp.asarray(suffix), jnp.asarray([len(s) for s in SUFFIXES], jnp.int32))


def _ours(fn, params, visual, keep, eos=NO_STOP, pad=0, position_mode="original", new=NEW):
  return np.asarray(fn(params, visual, jnp.asarray(keep), *_text(), max_new_tokens=new, eos_ids=eos, pad_id=pad,
                       position_mode=position_mode))


def _subset(n, k=10):
  rng = np.random.default_rng(3)
  return np.sort(np.stack([rng.choice(n, k, replace=False) for _ in range(2)]), axis=1)


def _torch_video(x):
  return torch.tensor(x).permute(0, 1, 4, 2, 3)


def _hf_generate(hf, cfg, video, i, n, **kw):
  ids = torch.tensor([PREFIX + [cfg.video_token_id] * (n + 1) + SUFFIXES[i]])
  with torch.no_grad():
    out = hf.generate(input_ids=ids, pixel_values_videos=_torch_video(video[i:i + 1]), do_sample=False, **kw)
  return out[0, ids.shape[1]:].numpy()


def test_all_tokens_match_hf_generate(llava, gen):
  hf, cfg, module, params, video, visual = llava
  n = visual.shape[1]
  ours = _ours(gen, params, visual, prefill.all_keep_indices(2, n))
  assert ours.shape == (2, NEW)
  for i in range(2):
    want = _hf_generate(hf, cfg, video, i, n, max_new_tokens=NEW, min_new_tokens=NEW)
    np.testing.assert_array_equal(ours[i], want)
  assert len(set(ours[0].tolist())) > 1 and not np.array_equal(ours[0], ours[1])


def _hf_greedy_from_embeds(hf, x, positions, new):
  """A manual greedy loop with past_key_values and explicit position ids (`generate` derives position
  ids from the attention mask, so it cannot continue the "original" positions of a kept subset)."""
  # transformers 5.x names the KV cache `cache` (argument and output), 4.x `past_key_values`
  name = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
  with torch.no_grad():
    out = hf(inputs_embeds=x, position_ids=torch.tensor([positions]), use_cache=True)
    toks = [int(out.logits[0, -1].argmax())]
    for t in range(1, new):
      out = hf(input_ids=torch.tensor([[toks[-1]]]), position_ids=torch.tensor([[positions[-1] + t]]),
               use_cache=True, **{name: getattr(out, name)})
      toks.append(int(out.logits[0, -1].argmax()))
  return np.asarray(toks)


@pytest.mark.parametrize("position_mode", ["original", "repacked"])
def test_kept_subset_matches_hf_fed_same_subset(llava, gen, position_mode):
  hf, cfg, module, params, video, visual = llava
  n = visual.shape[1]
  keep = _subset(n)
  ours = _ours(gen, params, visual, keep, position_mode=position_mode)
  full = _ours(gen, params, visual, prefill.all_keep_indices(2, n))
  assert not np.array_equal(ours, full)  # the subset really is another input
  lp = len(PREFIX)
  with torch.no_grad():
    feats = hf.model.get_video_features(_torch_video(video)).pooler_output  # [B, n + 1, d]
    embed = hf.get_input_embeddings()
    for i, suffix in enumerate(SUFFIXES):
      x = torch.cat([embed(torch.tensor(PREFIX)), feats[i, torch.tensor(keep[i])], feats[i, -1:],
                     embed(torch.tensor(suffix))], dim=0)[None]
      if position_mode == "original":
        pos = (list(range(lp)) + [lp + j for j in keep[i]] + [lp + n] + [lp + n + 1 + j for j in range(len(suffix))])
        want = _hf_greedy_from_embeds(hf, x, pos, NEW)
      else:  # contiguous positions: transformers' own generate from the same embeddings
        want = hf.generate(inputs_embeds=x, do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW)[0, -NEW:].numpy()
      np.testing.assert_array_equal(ours[i], want)


def test_each_sample_stops_at_its_first_stop_token(llava, gen):
  """The stop token is kept, then the sample is padded; the other sample continues (as HF generate)."""
  hf, cfg, module, params, video, visual = llava
  n = visual.shape[1]
  keep = prefill.all_keep_indices(2, n)
  free = _ours(gen, params, visual, keep)
  stop = int(free[0, 2])  # sample 0 emits it at step 2 (or earlier); sample 1 may never
  first = [int(np.flatnonzero(row == stop)[0]) if (row == stop).any() else None for row in free]
  pad = 1
  ours = _ours(gen, params, visual, keep, eos=(stop,), pad=pad)  # stop and pad ids are traced: no recompile
  for i in range(2):
    if first[i] is None:
      np.testing.assert_array_equal(ours[i], free[i])
      continue
    np.testing.assert_array_equal(ours[i, :first[i] + 1], free[i, :first[i] + 1])
    assert (ours[i, first[i] + 1:] == pad).all()
    want = _hf_generate(hf, cfg, video, i, n, max_new_tokens=NEW, eos_token_id=stop, pad_token_id=pad)
    np.testing.assert_array_equal(ours[i, :len(want)], want)
  assert first[0] is not None and first[0] <= 2


def test_decode_step_traced_once_and_compiled_once_per_shape(llava, monkeypatch):
  _, _, module, params, _, visual = llava
  traces = []
  step = generate.decode_step

  def counting(*args, **kw):
    traces.append(1)
    return step(*args, **kw)
  monkeypatch.setattr(generate, "decode_step", counting)
  fn = generate.jit_generate(module)
  rng = np.random.default_rng(0)
  n = visual.shape[1]
  for eos in (NO_STOP, (5,), (7,)):  # new masks and stop ids, same shapes
    keep = jnp.asarray(np.sort(np.stack([rng.choice(n, 6, replace=False) for _ in range(2)]), axis=1))
    fn(params, visual, keep, *_text(), max_new_tokens=8, eos_ids=eos, pad_id=0)
  assert sum(traces) == 1  # one trace of the step, not one per generated token
  assert sharded.compile_count(fn) == 1
  fn(params, visual, keep, *_text(), max_new_tokens=12, eos_ids=NO_STOP, pad_id=0)
  assert sharded.compile_count(fn) == 2 and sum(traces) == 2  # a new maximum length: one more


def test_sharded_generation_equals_single_device(llava, gen):
  """Parameters sharded over tensor=2 (heads, MLP, vocabulary), batch over data=2: same tokens."""
  _, _, module, params, _, visual = llava
  assert len(jax.devices()) >= 8, "conftest sets 8 fake CPU devices"
  keep = _subset(visual.shape[1])
  host = jax.device_get(params)
  mesh = shd.make_mesh((2, 1, 2), devices=jax.devices()[:4])
  shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), host)
  p = jax.tree_util.tree_map(jax.device_put, host, shd.param_shardings(shapes, mesh))
  fn = generate.make_generate(module, mesh, p, max_new_tokens=NEW, eos_ids=NO_STOP, pad_id=0)
  out = fn(p, *sharded.place_batch(mesh, visual, keep, *_text()))
  assert len(out.sharding.device_set) == 4
  np.testing.assert_array_equal(np.asarray(out), _ours(gen, params, visual, keep))
