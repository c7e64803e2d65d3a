"""CaCoVID policy network: shapes, question conditioning, padding, jit."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.compress.cacovid_policy import CaCoVIDPolicy

B, T, P, D, L = 2, 3, 4, 16, 5


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  visual = jnp.asarray(rng.normal(size=(B, T, P, D)), jnp.float32)
  question = jnp.asarray(rng.normal(size=(B, L, D)), jnp.float32)
  mask = jnp.array([[True] * L, [True, True, True, False, False]])
  return visual, question, mask


def numpy_params(module, *args, seed=0):
  """Random parameters without compiling an init (RNG kernels compile slowly on CPU): shapes, then numpy."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)["params"]
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == "scale":
      return jnp.ones(s.shape, s.dtype)
    std = 1.0 / np.sqrt(s.shape[-2]) if name == "kernel" else 0.02
    return jnp.asarray(rng.normal(size=s.shape) * std, s.dtype)
  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def setup():
  policy = CaCoVIDPolicy(hidden=32, num_heads=4, num_kv_heads=2)
  return policy, numpy_params(policy, *_inputs()), jax.jit(policy.apply)


def test_shapes_and_heads(setup):
  policy, params, apply = setup
  out = apply({"params": params}, *_inputs())
  assert out.token.shape == (B, T, P) and out.frame.shape == (B, T)
  assert out.token.dtype == jnp.float32 and np.all(np.isfinite(out.token)) and np.all(np.isfinite(out.frame))
  head = params["token_head"]  # width halves four times: 32 -> 16 -> 8 -> 4 -> 2 -> 2 outputs
  assert [head[f"fc{i}"]["kernel"].shape[1] for i in range(4)] == [16, 8, 4, 2]
  assert head["out"]["kernel"].shape == (2, 2)


def test_question_conditioning_and_padding(setup):
  _, params, apply = setup
  visual, question, mask = _inputs()
  base = apply({"params": params}, visual, question, mask)
  other = apply({"params": params}, visual, question[::-1], mask)  # swap the two questions
  assert not np.allclose(base.token, other.token, atol=1e-4)
  assert not np.allclose(base.frame, other.frame, atol=1e-4)
  # padded question positions (sample 1, positions 3, 4) do not matter
  noisy = question.at[1, 3:].set(100.0)
  again = apply({"params": params}, visual, noisy, mask)
  np.testing.assert_allclose(again.token, base.token, atol=1e-5)


def test_full_width_variant_and_errors():
  visual, question, mask = _inputs()
  policy = CaCoVIDPolicy(hidden=None, num_heads=2)  # CaCoVID: the LLM width, no projection
  variables = jax.eval_shape(policy.init, jax.random.key(1), visual, question, mask)
  assert "in_proj" not in variables["params"]
  assert variables["params"]["layer_0"]["mlp"]["up_proj"]["kernel"].shape == (16, 64)
  with pytest.raises(ValueError):
    policy.init(jax.random.key(1), visual, question[..., :8], mask)  # question width != d
  with pytest.raises(ValueError):
    CaCoVIDPolicy(hidden=30, num_heads=4).init(jax.random.key(1), visual, question, mask)


def test_residual_input_is_an_added_projection_of_the_inter_frame_residual():
  # use_residual adds Dense(LN(x[t] - x[t-1])) to each visual token's input: with that projection zeroed the
  # policy is the authors' (same other parameters); with it, scores move where tokens changed between frames
  visual, question, mask = _inputs()
  plain = CaCoVIDPolicy(hidden=32, num_heads=4)
  policy = CaCoVIDPolicy(hidden=32, num_heads=4, use_residual=True)
  params = numpy_params(policy, visual, question, mask)
  assert set(params) - set(numpy_params(plain, visual, question, mask)) == {"residual_proj", "ln_residual"}
  base = {k: v for k, v in params.items() if k not in ("residual_proj", "ln_residual")}
  zeroed = dict(params, residual_proj=jax.tree_util.tree_map(jnp.zeros_like, params["residual_proj"]))
  want = plain.apply({"params": base}, visual, question, mask).token
  np.testing.assert_allclose(policy.apply({"params": zeroed}, visual, question, mask).token, want, atol=1e-5)
  assert not np.allclose(policy.apply({"params": params}, visual, question, mask).token, want, atol=1e-3)
  # a still video has a zero residual everywhere: without biases the added term vanishes
  still = jnp.broadcast_to(visual[:, :1], visual.shape)
  no_bias = dict(params, residual_proj=dict(params["residual_proj"], bias=jnp.zeros(32)),
                 ln_residual=dict(params["ln_residual"], bias=jnp.zeros(visual.shape[-1])))
  np.testing.assert_allclose(policy.apply({"params": no_bias}, still, question, mask).token,
                             plain.apply({"params": base}, still, question, mask).token, atol=1e-5)
  with pytest.raises(ValueError, match="hidden"):
    CaCoVIDPolicy(hidden=None, num_heads=2, use_residual=True).init(jax.random.key(1), visual, question, mask)


def test_normalised_inputs_balance_the_question_against_large_visual_tokens():
  # norm_inputs: the logits do not change when the visual tokens are 30x larger (the question keeps its share),
  # while without it the larger visual tokens change them
  visual, question, mask = _inputs()
  for norm, same in ((True, True), (False, False)):
    policy = CaCoVIDPolicy(hidden=32, num_heads=4, norm_inputs=norm)
    params = numpy_params(policy, visual, question, mask)
    assert ("visual_in_norm" in params) == norm
    a, b = (policy.apply({"params": params}, v, question, mask).token for v in (visual, 30.0 * visual))
    assert np.allclose(a, b, atol=1e-4) == same


def test_question_attention_ranks_the_tokens_the_gated_question_token_looks_up():
  # one head whose queries and keys are the RMS-normed inputs (RoPE on dimensions whose rotation is negligible
  # at theta=1e12), no other path to the keep logit: a visual token scores by how much the question tokens
  # the gate picks attend to it
  e = np.eye(8, dtype=np.float32)
  visual = jnp.asarray(3.0 * e[[2, 3, 6, 7]])[None, None]  # [1, T=1, P=4, 8]: tokens a, b, c, d
  question = jnp.asarray(e[[2, 3, 6]])[None]  # names a, names b, and a padded token that names c
  mask = jnp.array([[True, True, False]])
  policy = CaCoVIDPolicy(hidden=None, num_heads=1, question_attention=True, rope_theta=1e12)
  params = numpy_params(policy, visual, question, mask)
  attn = dict(params["layer_0"]["self_attn"])
  attn["q_proj"] = {"kernel": jnp.asarray(4.0 * e), "bias": jnp.zeros(8)}
  attn["k_proj"] = {"kernel": jnp.asarray(e), "bias": jnp.zeros(8)}
  attn["o_proj"] = {"kernel": jnp.zeros((8, 8))}  # the question's hidden state stays its embedding
  layer = dict(params["layer_0"], self_attn=attn,
               mlp=dict(params["layer_0"]["mlp"], down_proj={"kernel": jnp.zeros((32, 8))}))
  head = dict(params["token_head"], out=jax.tree_util.tree_map(jnp.zeros_like, params["token_head"]["out"]))
  params = dict(params, layer_0=layer, token_head=head, type_embed=jnp.zeros_like(params["type_embed"]))
  params["question_gate"] = {"kernel": jnp.zeros((8, 1)), "bias": jnp.zeros(1)}  # as initialised: the mean
  logit = lambda p: np.asarray(policy.apply({"params": p}, visual, question, mask).token[0, 0])
  mean = logit(params)
  assert min(mean[:2]) > max(mean[2:]) + 1.0, mean  # a and b (named by valid question tokens), not c or d
  gate_a = dict(params, question_gate={"kernel": jnp.asarray(10.0 * e[:, 2:3] + 30.0 * e[:, 6:7]),
                                        "bias": jnp.zeros(1)})
  only_a = logit(gate_a)  # the gate favours the token naming a (and more the padded one, which must not count)
  assert only_a[0] > max(only_a[1:]) + 1.0, only_a
  assert policy.question_attention and "question_attention_mix" in params
  blind = CaCoVIDPolicy(hidden=None, num_heads=1, rope_theta=1e12)
  assert "question_gate" not in jax.eval_shape(blind.init, jax.random.key(0), visual, question, mask)["params"]
