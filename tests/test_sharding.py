"""Sharding of the frozen LLM on 8 fake CPU devices (see conftest.py)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from score_jax.models import sharding as shd
from score_jax.models import sharded
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision

CFG = LlavaOnevisionConfig(
    vision=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=16, patch_size=4),
    text=Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2),
    video_token_id=63, image_token_id=62)


def _run(mesh_shape, params_host):
  devices = jax.devices()[:int(np.prod(mesh_shape))]
  mesh = shd.make_mesh(mesh_shape, devices=devices)
  module = LlavaOnevision(CFG)
  shapes = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params_host)
  params = jax.tree_util.tree_map(jax.device_put, params_host, shd.param_shardings(shapes, mesh))
  frames = np.random.default_rng(0).normal(size=(4, 2, 16, 16, 3)).astype(np.float32)
  encode = sharded.make_encode_video(module, mesh, params)
  visual = encode(params, *sharded.place_batch(mesh, frames))
  keep = np.sort(np.random.default_rng(1).permutation(8)[:5])[None].repeat(4, 0)
  batch = sharded.place_batch(mesh, keep, np.full((4, 3), 5), np.tile(np.arange(4), (4, 1)), np.full((4,), 4))
  fn = sharded.make_prefill(module, mesh, params)
  return params, fn(params, visual, *batch), mesh


@pytest.fixture(scope="module")
def host_params():
  module = LlavaOnevision(CFG)
  mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  return jax.device_get(sharded.init_llava_params(module, mesh, jax.random.key(0)))


@pytest.mark.parametrize("mesh_shape", [(2, 1, 4), (1, 2, 4)])
def test_sharded_logits_equal_single_device(host_params, mesh_shape):
  assert len(jax.devices()) >= 8, "conftest sets 8 fake CPU devices"
  _, single, _ = _run((1, 1, 1), host_params)
  params, multi, mesh = _run(mesh_shape, host_params)
  assert multi.sharding.spec == P(shd.BATCH_AXES, None)
  assert len(multi.sharding.device_set) == 8
  np.testing.assert_allclose(np.asarray(multi), np.asarray(single), atol=1e-5)


def test_param_shardings_follow_rules_table(host_params):
  mesh = shd.make_mesh((1, 2, 4), devices=jax.devices()[:8])
  params = sharded.init_llava_params(LlavaOnevision(CFG), mesh, jax.random.key(0))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  assert flat
  for path, leaf in flat:
    name = shd.path_str(path)
    axes = shd.logical_axes(name, leaf.ndim)
    expected = shd.spec_for(leaf.shape, axes, mesh)
    assert leaf.sharding.spec == expected, name
  get = lambda p: dict((shd.path_str(k), v) for k, v in flat)[p]
  # Spot checks straight from the table: heads / MLP on `tensor`, embed on `fsdp`, norms replicated.
  assert get("language_model/layers/self_attn/q_proj/kernel").sharding.spec == P(None, "fsdp", "tensor")
  assert get("language_model/layers/mlp/down_proj/kernel").sharding.spec == P(None, "tensor", "fsdp")
  assert get("language_model/embed_tokens/embedding").sharding.spec == P("tensor", "fsdp")
  assert get("language_model/norm/scale").sharding.spec == P(None)
  q = get("language_model/layers/self_attn/q_proj/kernel")
  # Created sharded: each device holds 1/8 of the array, never the whole.
  assert {s.data.shape for s in q.addressable_shards} == {(2, 16, 8)}


def test_every_param_has_exactly_one_rule(host_params):
  for path, leaf in jax.tree_util.tree_flatten_with_path(host_params)[0]:
    name = shd.path_str(path)
    matches = [p for p, _ in shd.PARAM_LOGICAL_AXES if re.search(p, name)]
    assert len(matches) >= 1, name
    assert len(shd.logical_axes(name, leaf.ndim)) == leaf.ndim


def test_unmatched_param_raises():
  with pytest.raises(ValueError, match="No sharding rule matches parameter 'foo/bar'"):
    shd.logical_axes("foo/bar", 2)


def test_indivisible_dims_stay_replicated():
  mesh = shd.make_mesh((1, 2, 4), devices=jax.devices()[:8])
  assert shd.spec_for((6, 10), ("embed", "heads"), mesh) == P("fsdp", None)


def test_mesh_errors_name_the_problem():
  with pytest.raises(ValueError, match="needs 16 devices"):
    shd.make_mesh((2, 2, 4), devices=jax.devices()[:8])
  assert shd.make_mesh((-1, 1, 4), devices=jax.devices()[:8]).shape == {"data": 2, "fsdp": 1, "tensor": 4}


def test_prefill_compiles_once_per_keep_size(host_params):
  mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  module = LlavaOnevision(CFG)
  params = jax.device_put(host_params)
  fn = sharded.make_prefill(module, mesh, params)
  visual = jnp.zeros((2, 2, 4, 32))
  text = (jnp.ones((2, 3), jnp.int32), jnp.ones((2, 4), jnp.int32))
  rng = np.random.default_rng(0)
  for _ in range(3):
    for k in (2, 6):
      keep = jnp.asarray(np.sort(rng.permutation(8)[:k])[None].repeat(2, 0))
      fn(params, visual, keep, *text, jnp.asarray(rng.integers(1, 5, 2)))
  assert sharded.compile_count(fn) == 2
