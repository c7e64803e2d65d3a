"""Analytic FLOPs of the vision side against XLA's own count, and `xla_flops` itself."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest

from score_jax.models import flops, prefill
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.sharded import abstract_params, llava_dummy_inputs


def test_xla_flops_counts_every_scan_iteration():
  """XLA counts a while loop's body once; `xla_flops` unrolls scans (also nested ones) so it counts all."""
  m, n = 64, 128

  def inner(c, w):
    return jax.lax.scan(lambda c, _: (c @ w, None), c, None, length=3)[0]

  def fn(x, w):
    return jax.lax.scan(lambda c, _: (inner(c, w), None), x, None, length=5)[0]
  x, w = jax.ShapeDtypeStruct((m, n), jnp.float32), jax.ShapeDtypeStruct((n, n), jnp.float32)
  once = jax.jit(fn).lower(x, w).compile().cost_analysis()
  once = once[0] if isinstance(once, (list, tuple)) else once
  matmul = 2.0 * m * n * n
  assert once["flops"] < 2 * matmul  # the plain count: one body of each loop
  assert flops.xla_flops(fn, x, w) == pytest.approx(15 * matmul, rel=1e-3)


def tiny_config(layers: int = 2) -> LlavaOnevisionConfig:
  return LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=layers,
                                num_attention_heads=2, image_size=40, patch_size=8),
      text=Qwen2Config(vocab_size=32, hidden_size=96, intermediate_size=192, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1))


def test_vision_flops_match_xla():
  """Analytic (matmuls only) vs XLA (matmuls + elementwise: norms, GELU, softmax, adds, each 1 FLOP per
  element) for SigLIP + projector + pooling of 2 frames: XLA's count is at most 10% higher. A 5x5 patch
  grid pools to 3x3 (the odd-side case of 27 -> 14)."""
  cfg = tiny_config()
  module = LlavaOnevision(cfg)
  params = abstract_params(module, *llava_dummy_inputs(cfg), method=LlavaOnevision.init_all)
  frames = jax.ShapeDtypeStruct((1, 2, 40, 40, 3), jnp.float32)
  xla = flops.xla_flops(functools.partial(prefill.encode_video, module), params, frames)
  analytic = flops.vision_flops(cfg, 2)
  assert analytic == 2 * flops.vision_flops_per_frame(cfg)
  assert 1.0 <= xla / analytic <= 1.10, (xla, analytic)


def test_vision_flops_per_layer_and_feature_layer():
  """Each SigLIP layer adds the same count; a vision_feature_layer of -2 skips the last layer."""
  one, two = flops.vision_flops_per_frame(tiny_config(1)), flops.vision_flops_per_frame(tiny_config(2))
  p, d, i = 25, 64, 256
  assert two - one == 2 * p * (4 * d * d + 2 * d * i) + 4 * p * p * d
  assert flops.vision_flops_per_frame(dataclasses.replace(tiny_config(2), vision_feature_layer=-2)) == one


def test_llava_ov_7b_vision_side():
  """SigLIP-so400m at 384 px (26 layers run) + projector to 3584: about 0.67 TFLOPs per frame, so 32 frames
  (21 TFLOPs) are about a quarter of the full 6272-token prefill of Qwen2-7B: the ~3.7x bound at 10%."""
  from score_jax.compress.selection import budget
  from score_jax.plan import ARCHITECTURES
  cfg = LlavaOnevisionConfig.from_hf(ARCHITECTURES["llava-onevision-qwen2-7b-ov-hf"])
  assert cfg.tokens_per_frame == 196
  per_frame = flops.vision_flops_per_frame(cfg)
  assert 0.6e12 < per_frame < 0.7e12
  vision, n, text = 32 * per_frame, 32 * 196, 79
  bound = (vision + flops.prefill_flops(cfg.text, n + text)) / (
      vision + flops.prefill_flops(cfg.text, budget(n, 0.1) + text))
  assert 3.5 < bound < 3.8


def test_policy_flops_count_every_attention_block():
  """The SCORE policy (experiments/llava_ov_0_5b.py: hidden 128, one block) on 4 frames x 196 tokens of width
  896: its self-attention runs as `lax.map` over 4 query blocks (784 rows padded to 1024). XLA's count (compiled or only lowered) is the
  matmuls' (input projection, q/k/v/o, attention over all N tokens, MLP, head) plus elementwise work."""
  from score_jax.compress.blocked_attention import DEFAULT_BLOCK
  from score_jax.methods import score
  from score_jax.rl.train_step import policy_keep_indices
  from score_jax.testing.smoke import experiment_config
  policy = score.make_policy(experiment_config("llava_ov_0_5b"))
  b, t, p, d, h = 1, 4, 196, 896, policy.hidden
  n = t * p
  visual = jax.ShapeDtypeStruct((b, t, p, d), jnp.float32)
  params = jax.eval_shape(policy.init, jax.random.key(0), visual)["params"]
  fn = lambda q, v: policy_keep_indices(policy, q, v, 78)
  compiled, lowered = flops.xla_flops(fn, params, visual), flops.xla_flops(fn, params, visual, optimized=False)
  in_dim = 2 * d + 1 + policy.use_surprise_memory  # LN(x), LN(residual), surprise, its running max
  padded = -(-n // DEFAULT_BLOCK) * DEFAULT_BLOCK  # query rows, padded to whole blocks
  matmuls = 2 * n * (in_dim * h + 4 * h * h + 2 * h * policy.mlp_ratio * h + h) + 4 * padded * n * h
  assert lowered == pytest.approx(compiled, rel=0.01)
  assert 1.0 <= compiled / matmuls <= 1.10, (compiled, matmuls)
