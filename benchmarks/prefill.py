"""Prefill time with all visual tokens vs 25% and 10% kept, next to the analytic FLOP ratio.

    python benchmarks/prefill.py                      # Qwen2-0.5B-shaped decoder, 2048 visual tokens
    python benchmarks/prefill.py --frames=8 --repeats=2   # quicker

Random weights (shapes are what matter for speed). Everything is measured in this one run: median
wall time of `--repeats` calls after one warm-up call per shape. It also checks that the compressed
prefill compiles exactly once per retention ratio (jit cache size before/after repeated calls).
"""
from __future__ import annotations

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from score_jax.models import sharded, sharding as shd
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.flops import prefill_flops
from score_jax.models.llava_onevision import LlavaOnevision

_FRAMES = flags.DEFINE_integer("frames", 32, "video frames")
_TPF = flags.DEFINE_integer("tokens_per_frame", 64, "visual tokens per frame")
_TEXT = flags.DEFINE_integer("text_tokens", 64, "question/suffix tokens (plus a 14-token prefix)")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per ratio (median reported)")
_RATIOS = flags.DEFINE_list("ratios", ["1.0", "0.25", "0.10"], "retention ratios")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute and parameter dtype")

QWEN2_0_5B = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
PREFIX_LEN = 14


def main(_):
  dt = jnp.dtype(_DTYPE.value)
  cfg = LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=16, patch_size=8),
      text=QWEN2_0_5B)
  module = LlavaOnevision(cfg, dtype=dt, param_dtype=dt)
  mesh = shd.make_mesh((-1, 1, 1))
  params = sharded.init_llava_params(module, mesh, jax.random.key(0))
  fn = sharded.make_prefill(module, mesh, params)
  n = _FRAMES.value * _TPF.value
  rng = np.random.default_rng(0)
  visual = jnp.asarray(rng.normal(size=(1, n, cfg.text.hidden_size)), dt)
  prefix = jnp.asarray(rng.integers(0, 1000, (1, PREFIX_LEN)), jnp.int32)
  suffix = jnp.asarray(rng.integers(0, 1000, (1, _TEXT.value)), jnp.int32)
  suffix_len = jnp.asarray([_TEXT.value], jnp.int32)
  text = PREFIX_LEN + 1 + _TEXT.value  # prefix, image_newline, suffix

  print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}; decoder: Qwen2-0.5B shape "
        f"({cfg.text.num_hidden_layers} layers, d={cfg.text.hidden_size}), {dt.name}; "
        f"visual tokens N={n} ({_FRAMES.value}x{_TPF.value}), text tokens={text}")
  rows, compiles = [], []
  for r in [float(x) for x in _RATIOS.value]:
    k = max(1, round(r * n))
    keep = jnp.asarray(np.sort(rng.permutation(n)[:k])[None], jnp.int32)
    before = sharded.compile_count(fn)
    jax.block_until_ready(fn(params, visual, keep, prefix, suffix, suffix_len))  # compile + warm-up
    times = []
    for _ in range(_REPEATS.value):
      keep = jnp.asarray(np.sort(rng.permutation(n)[:k])[None], jnp.int32)  # new mask, same shape
      t0 = time.perf_counter()
      jax.block_until_ready(fn(params, visual, keep, prefix, suffix, suffix_len))
      times.append(time.perf_counter() - t0)
    compiles.append(sharded.compile_count(fn) - before)
    rows.append((r, k, float(np.median(times)), prefill_flops(cfg.text, k + text)))
  full_t, full_f = rows[0][2], rows[0][3]
  print()
  print("| kept | tokens | prefill s (median) | speedup | analytic FLOP ratio | compilations |")
  print("|---|---|---|---|---|---|")
  for (r, k, t, f), c in zip(rows, compiles):
    print(f"| {r:.0%} | {k + text} | {t:.3f} | {full_t / t:.2f}x | {full_f / f:.2f}x | {c} |")
  print()
  total = sharded.compile_count(fn)
  print(f"compilations in total: {total} for {len(rows)} ratios "
        f"({'once per ratio' if total == len(rows) else 'NOT once per ratio'})")


if __name__ == "__main__":
  app.run(main)
