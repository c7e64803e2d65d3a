"""Prefill time with all visual tokens vs 25% and 10% kept, next to the analytic FLOP ratio.

    python benchmarks/prefill.py                      # Qwen2-0.5B-shaped decoder, 2048 visual tokens
    python benchmarks/prefill.py --frames=8 --repeats=2   # quicker
    python benchmarks/prefill.py --decoder=qwen2_7b --dtype=bfloat16 --frames=32 --tokens_per_frame=196 \
        --attention=cudnn,xla                         # LLaVA-OV-7B shape on a GPU: fused attention vs XLA's

`--attention` lists implementations (score_jax/models/attention.py) to time side by side on the same
parameters; "auto" resolves to what the backend offers (printed).

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

from score_jax.models import attention, sharded, sharding as shd
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.flops import prefill_flops
from score_jax.models.llava_onevision import LlavaOnevision

_FRAMES = flags.DEFINE_integer("frames", 32, "video frames")
_TPF = flags.DEFINE_integer("tokens_per_frame", 64, "visual tokens per frame")
_TEXT = flags.DEFINE_integer("text_tokens", 64, "question/suffix tokens (plus a 14-token prefix)")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per ratio (median reported)")
_RATIOS = flags.DEFINE_list("ratios", ["1.0", "0.25", "0.10"], "retention ratios")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute and parameter dtype")
_DECODER = flags.DEFINE_enum("decoder", "qwen2_0_5b", ["qwen2_0_5b", "qwen2_7b", "tiny"],
                             "decoder shape (tiny: 2 layers, d=64, for smoke runs)")
_ATTENTION = flags.DEFINE_list("attention", ["auto"], "attention implementations to time (see attention.py)")

QWEN2_0_5B = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True)
QWEN2_7B = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, tie_word_embeddings=False)
TINY = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
DECODERS = {"qwen2_0_5b": QWEN2_0_5B, "qwen2_7b": QWEN2_7B, "tiny": TINY}
PREFIX_LEN = 14


def _time_ratios(fn, params, visual, prefix, suffix, suffix_len, n, rng):
  """[(ratio, k, median seconds, compilations)] for each retention ratio."""
  rows = []
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
    rows.append((r, k, float(np.median(times)), sharded.compile_count(fn) - before))
  return rows


def main(_):
  dt = jnp.dtype(_DTYPE.value)
  cfg = LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=16, patch_size=8),
      text=DECODERS[_DECODER.value])
  mesh = shd.make_mesh((-1, 1, 1))
  params = sharded.init_llava_params(LlavaOnevision(cfg, dtype=dt, param_dtype=dt), mesh, jax.random.key(0))
  n = _FRAMES.value * _TPF.value
  rng = np.random.default_rng(0)
  visual = jnp.asarray(rng.normal(size=(1, n, cfg.text.hidden_size)), dt)
  prefix = jnp.asarray(rng.integers(0, 1000, (1, PREFIX_LEN)), jnp.int32)
  suffix = jnp.asarray(rng.integers(0, 1000, (1, _TEXT.value)), jnp.int32)
  suffix_len = jnp.asarray([_TEXT.value], jnp.int32)
  text = PREFIX_LEN + 1 + _TEXT.value  # prefix, image_newline, suffix

  print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}; decoder: {_DECODER.value} shape "
        f"({cfg.text.num_hidden_layers} layers, d={cfg.text.hidden_size}), {dt.name}; "
        f"visual tokens N={n} ({_FRAMES.value}x{_TPF.value}), text tokens={text}")
  table, fns = [], []
  for impl in _ATTENTION.value:
    resolved = attention.resolve_implementation(impl, dt, cfg.text.head_size)
    fn = sharded.make_prefill(LlavaOnevision(cfg, dtype=dt, param_dtype=dt, attention=impl), mesh, params)
    table += [(impl, resolved) + row for row in _time_ratios(fn, params, visual, prefix, suffix, suffix_len, n, rng)]
    fns.append(fn)
  full = {impl: t for impl, _, r, _, t, _ in table if r == 1.0}
  first = table[0]
  print()
  print("| attention | kept | tokens | prefill s (median) | speedup vs its 100% | vs first row's impl | "
        "analytic FLOP ratio | compilations |")
  print("|---|---|---|---|---|---|---|---|")
  for impl, resolved, r, k, t, c in table:
    same = [t0 for i0, _, r0, _, t0, _ in table if i0 == first[0] and r0 == r][0]
    own = f"{full[impl] / t:.2f}x" if impl in full else "-"
    flop_ratio = prefill_flops(cfg.text, n + text) / prefill_flops(cfg.text, k + text)
    print(f"| {impl} ({resolved}) | {r:.0%} | {k + text} | {t:.3f} | {own} | {same / t:.2f}x | {flop_ratio:.2f}x | {c} |")
  print()
  total = sum(sharded.compile_count(fn) for fn in fns)
  want = len(_RATIOS.value) * len(fns)
  print(f"compilations in total: {total} for {len(_RATIOS.value)} ratios x {len(fns)} implementations "
        f"({'once per ratio' if total == want else 'NOT once per ratio'})")


if __name__ == "__main__":
  app.run(main)
