"""Training-free selectors: each on a constructed case its rule decides; static, ascending, jittable."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.compress.baselines import get_selector
from score_jax.compress.baselines.density_peak import density_peak_scores
from score_jax.compress.baselines.fastv import fastv_scores
from score_jax.compress.baselines.visionzip import visionzip_tokens
from score_jax.models import prefill
from score_jax.models.attention import attention_mask
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.partial_forward import (attention_rows, final_norm, forward_layers, layer_params,
                                              layer_query_key)
from score_jax.models.qwen2 import Qwen2MLP, RMSNorm
from score_jax.testing.random_params import numpy_params, touch_all

VISUAL_ONLY = ("random_stratified", "density_peak", "divprune", "visionzip_select", "vidcom2", "random_novel")


@functools.lru_cache(maxsize=None)
def _jitted(name, k, extras_items):
  extras = dict(extras_items) if extras_items is not None else None
  return jax.jit(lambda v, key: get_selector(name)(v, k, key=key, extras=extras))


def _run(name, visual, k, extras=None, seed=0):
  fn = _jitted(name, k, tuple(sorted(extras.items())) if extras else None)
  return np.asarray(fn(jnp.asarray(visual, jnp.float32), jax.random.key(seed)))


@pytest.mark.parametrize("name", VISUAL_ONLY)
def test_static_ascending_unique(name):
  visual = np.random.default_rng(0).normal(size=(2, 4, 9, 8))
  idx = _run(name, visual, 7)
  assert idx.shape == (2, 7) and idx.dtype == np.int32
  assert np.all(np.diff(idx, axis=-1) > 0) and idx.min() >= 0 and idx.max() < 36


def test_random_novel_keeps_frame_0_and_changed_places_before_still_ones():
  rng = np.random.default_rng(7)
  visual = np.repeat(rng.normal(size=(1, 1, 9, 8)), 4, axis=1)
  visual[0, 2:, 4] = rng.normal(size=8)  # place 4 changes at frame 2 and stays: new in frames 2 and 3
  new = set(range(9)) | {2 * 9 + 4, 3 * 9 + 4}
  assert set(_run("random_novel", visual, 11)[0]) == new  # exactly the new tokens
  picks = [set(_run("random_novel", visual, 5, seed=s)[0]) for s in range(4)]
  assert all(p <= new for p in picks) and len({frozenset(p) for p in picks}) > 1  # random among them only
  assert len(set(_run("random_novel", visual, 14)[0]) - new) == 3  # still tokens only after every new one


def test_random_stratified_counts():
  visual = np.zeros((2, 4, 9, 8))  # same shapes and k as above: no new compile
  for seed in range(3):
    idx = _run("random_stratified", visual, 7, seed=seed)  # 7 = 1 per frame + 3 extra frames
    counts = np.stack([np.bincount(row // 9, minlength=4) for row in idx])
    assert np.all(np.sort(counts, axis=-1) == [1, 2, 2, 2])
  a, b = _run("random_stratified", visual, 7, seed=0), _run("random_stratified", visual, 7, seed=1)
  assert not np.array_equal(a, b)


def test_divprune_picks_distinct_among_duplicates():
  rng = np.random.default_rng(1)
  distinct = rng.normal(size=(3, 8))
  tokens = distinct[rng.integers(0, 3, size=24)]  # 24 tokens, each a copy of one of 3 vectors
  tokens[[2, 9, 17]] = distinct  # make sure all three occur
  idx = _run("divprune", tokens.reshape(1, 2, 12, 8), 3)[0]
  picked = tokens[idx]
  assert len({tuple(np.round(x, 6)) for x in picked}) == 3  # one copy of each distinct content


def _two_clusters(rng, d=8):
  frame = []
  for centre in (np.zeros(d), np.full(d, 3.0)):
    frame.append(centre)
    for axis in range(2):
      for sign in (1, -1):
        frame.append(centre + sign * 0.1 * np.eye(d)[axis])
  frame += list(10.0 * rng.normal(size=(6, d)))  # isolated outliers: far from everything, not dense
  return np.stack(frame)  # 16 tokens: centres at 0 and 5


def test_density_peak_picks_cluster_centres():
  rng = np.random.default_rng(2)
  frames = np.stack([_two_clusters(rng) for _ in range(2)])
  scores = np.asarray(density_peak_scores(jnp.asarray(frames, jnp.float32)))
  assert set(np.argsort(-scores[0])[:2]) == {0, 5}
  idx = _run("density_peak", frames[None], 4)[0]
  np.testing.assert_array_equal(idx, [0, 5, 16, 21])


def test_visionzip_keeps_dominant_tokens():
  rng = np.random.default_rng(3)
  t, p, d = 2, 16, 8
  u = np.eye(d)[0]
  strength = np.full((t, p), 0.3)
  strength[0, [4, 11]] = strength[1, [1, 7]] = 3.0  # every query attends to these
  visual = 0.2 * rng.normal(size=(t, p, d)) + strength[..., None] * u
  idx = _run("visionzip_select", visual[None], 6)[0]  # 5 dominant (quotas 3, 2) + 1 contextual
  assert {4, 11, 16 + 1, 16 + 7} <= set(idx)
  only_dom = _run("visionzip_select", visual[None], 4, extras={"dominant_frac": 1.0})[0]
  np.testing.assert_array_equal(only_dom, [4, 11, 17, 23])
  ids, feats = jax.jit(visionzip_tokens, static_argnums=1)(jnp.asarray(visual[None], jnp.float32), 6)
  flat = visual.reshape(-1, d)
  dom = np.isin(np.asarray(ids[0]), [4, 11, 17, 23])
  np.testing.assert_allclose(np.asarray(feats[0])[dom], flat[np.asarray(ids[0])[dom]], rtol=1e-6)
  assert feats.shape == (1, 6, d)


def test_vidcom2_keeps_tokens_that_change():
  rng = np.random.default_rng(4)
  t, p = 4, 16
  base = np.concatenate([rng.normal(size=(p, 8)), np.full((p, 8), 0.5) + 0.01 * rng.normal(size=(p, 8))], -1)
  video = np.repeat(base[None], t, axis=0)  # a static scene ...
  video[2, [3, 7], 8:] = -0.5 + 0.01 * rng.normal(size=(2, 8))  # ... where two tokens of frame 2 change
  idx = _run("vidcom2", video[None], 12)[0]
  assert {2 * p + 3, 2 * p + 7} <= set(idx)
  counts = np.bincount(idx // p, minlength=t)
  assert counts.argmax() == 2 and counts.min() >= 1  # the unique frame gets the largest budget


# ---- FastV on a tiny random LLaVA-OneVision decoder ------------------------------------------

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                              image_size=8, patch_size=4),
    text=Qwen2Config(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                     num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0))




@pytest.fixture(scope="module")
def llm():
  module = LlavaOnevision(CFG)
  params = numpy_params(lambda key, ids, x: module.init(key, ids, x, method=touch_all), jnp.zeros((1, 2), jnp.int32),
                        jnp.zeros((1, 1, 32)))
  rng = np.random.default_rng(5)
  b, t, p = 2, 2, 6
  data = dict(visual=jnp.asarray(rng.normal(size=(b, t, p, 32)), jnp.float32),
              prefix=jnp.asarray(rng.integers(0, 32, (b, 3)), jnp.int32),
              suffix=jnp.asarray(rng.integers(0, 32, (b, 5)), jnp.int32), suffix_len=jnp.array([5, 3]))
  return module, params, data


def test_attention_rows_constructed():
  q = jnp.zeros((1, 1, 2, 4)).at[0, 0, :, 0].set(10.0)  # one query, 2 heads, aligned with key 3
  k = jnp.zeros((1, 6, 1, 4)).at[0, 3, 0, 0].set(1.0).at[0, 5, 0, 0].set(2.0)
  rows = attention_rows(q, k, jnp.array([[4]]), jnp.ones((1, 6), bool))  # causal: key 5 is in the future
  assert int(jnp.argmax(rows[0, 0])) == 3 and float(rows[0, 0, 5]) == 0.0
  np.testing.assert_allclose(rows.sum(-1), 1.0, rtol=1e-6)


def test_partial_forward_matches_decoder(llm):
  module, params, data = llm
  pairs = jax.jit(lambda params, data: _partial_forward_check(module, params, data))(params, data)
  for got, want, atol in pairs:
    np.testing.assert_allclose(got, want, atol=atol)


def _partial_forward_check(module, params, data):
  b, t, p, _ = data["visual"].shape
  inputs = prefill.assemble_inputs(module, params, data["visual"], prefill.all_keep_indices(b, t * p),
                                   data["prefix"], data["suffix"], data["suffix_len"])
  full = prefill.decode(module, params, inputs)
  hidden = forward_layers(module, params, inputs, 3)
  final = final_norm(module, params, hidden)
  # layer 1's q / k rebuild its output: softmax(q k^T / sqrt(D)) v -> o_proj -> + residual -> + MLP
  h1 = forward_layers(module, params, inputs, 1)
  q, k = layer_query_key(module, params, h1, inputs.positions, 1)
  lp = layer_params(params, 1)
  norm = lambda name, x: RMSNorm(CFG.text.rms_norm_eps).apply({"params": lp[name]}, x)
  attn = lp["self_attn"]
  v = (norm("input_layernorm", h1) @ attn["v_proj"]["kernel"] + attn["v_proj"]["bias"]).reshape(b, -1, 2, 8)
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, jnp.repeat(k, 2, axis=2)) / np.sqrt(8.0)
  mask = attention_mask(inputs.valid, inputs.valid, causal=True)
  w = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
  out = jnp.einsum("bhqk,bkhd->bqhd", w, jnp.repeat(v, 2, axis=2)).reshape(h1.shape)
  x = h1 + out @ attn["o_proj"]["kernel"]
  x = x + Qwen2MLP(CFG.text).apply({"params": lp["mlp"]}, norm("post_attention_layernorm", x))
  h2 = forward_layers(module, params, inputs, 2)
  # the head-averaged rows of `attention_rows` are the mean of those weights
  rows = attention_rows(q[:, -3:], k, jnp.broadcast_to(jnp.arange(q.shape[1] - 3, q.shape[1]), (b, 3)),
                        inputs.valid)
  resumed = forward_layers(module, params, inputs, 3, start=1, x=h1)
  return [(final, full, 2e-5), (x, h2, 2e-5), (rows[0], w[0, :, -3:].mean(0), 1e-6), (resumed, hidden, 1e-6)]


def test_fastv_selects_most_attended(llm):
  module, params, data = llm

  @jax.jit
  def run(params, data):  # one compile for the selector and both query kinds
    extras = dict(llm_module=module, llm_params=params, prefix=data["prefix"], suffix=data["suffix"],
                  suffix_len=data["suffix_len"], fastv_layer=1)
    score = lambda query: fastv_scores(module, params, data["visual"], data["prefix"], data["suffix"],
                                       data["suffix_len"], 1, query)
    return get_selector("fastv")(data["visual"], 4, key=None, extras=extras), score("last"), score("question")

  idx, scores, q_scores = map(np.asarray, run(params, data))
  assert scores.shape == (2, 12) and np.all(scores > 0)
  assert idx.shape == (2, 4) and np.all(np.diff(idx, axis=-1) > 0)
  for b in range(2):
    np.testing.assert_array_equal(idx[b], np.sort(np.argsort(-scores[b])[:4]))
  assert q_scores.shape == (2, 12) and not np.allclose(q_scores, scores)
  with pytest.raises(ValueError):
    get_selector("fastv")(data["visual"], 4, key=None, extras=None)
