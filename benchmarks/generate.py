"""Greedy generation speed: time to first token and decode tokens/s with all visual tokens and with 25% / 10% kept.

    python benchmarks/generate.py                                 # the embedded model (8 frames x 16 tokens)
    python benchmarks/generate.py --shape=qwen2_0_5b --frames=8   # random weights, Qwen2-0.5B-shaped decoder

Time to first token (TTFT) is one call that prefills the kept tokens into the KV cache and picks the
first token (`max_new_tokens=1`); decode tokens/s is batch x (new_tokens - 1) over the extra time of a
`new_tokens` call (no stop token is ever hit, so every call decodes all of them). Both are medians of
`--repeats` calls after a warm-up per shape; the jit cache is checked to hold one compilation per
(retention ratio, length). Everything is measured in this one run, on whatever the default JAX
devices are (the parameters and KV cache sharded over a data-parallel mesh, as `make_generate` does).
"""
from __future__ import annotations

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.selection import budget
from score_jax.models import generate, sharded, sharding as shd
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig
from score_jax.models.llava_onevision import LlavaOnevision

_SHAPE = flags.DEFINE_enum("shape", "embedded", ["embedded", "qwen2_0_5b"],
                           "the embedded model, or a random model with a Qwen2-0.5B-shaped decoder")
_FRAMES = flags.DEFINE_integer("frames", 8, "video frames (qwen2_0_5b; the embedded model has its own)")
_TPF = flags.DEFINE_integer("tokens_per_frame", 64, "visual tokens per frame (qwen2_0_5b)")
_TEXT = flags.DEFINE_integer("text_tokens", 32, "question tokens after the video")
_BATCH = flags.DEFINE_integer("batch", 1, "samples per call")
_NEW = flags.DEFINE_integer("new_tokens", 16, "generated tokens per sample")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per ratio and length (median reported)")
_RATIOS = flags.DEFINE_list("ratios", ["1.0", "0.25", "0.10"], "retention ratios")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype (qwen2_0_5b)")

PREFIX_LEN = 14
NO_STOP = (-1,)  # no token id is -1: every call decodes all its tokens


def _model(mesh):
  """(module, params, visual tokens per video, description)."""
  if _SHAPE.value == "embedded":
    from score_jax.embedded import base_model
    from score_jax.models import hf_loading
    cfg, module, params = hf_loading.load_llava_onevision(base_model.ensure_base_model(), mesh=mesh)
    n = 8 * cfg.tokens_per_frame  # the generated world's 8 frames
    return module, params, n, f"embedded model ({cfg.text.num_hidden_layers} layers, d={cfg.text.hidden_size})"
  dt = jnp.dtype(_DTYPE.value)
  cfg = LlavaOnevisionConfig(
      vision=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=16, patch_size=8),
      text=Qwen2Config(tie_word_embeddings=True))  # the Qwen2Config defaults are Qwen2-0.5B's shape
  module = LlavaOnevision(cfg, dtype=dt, param_dtype=dt)
  params = sharded.init_llava_params(module, mesh, jax.random.key(0))
  return module, params, _FRAMES.value * _TPF.value, (
      f"Qwen2-0.5B-shaped decoder, random weights ({cfg.text.num_hidden_layers} layers, d={cfg.text.hidden_size}), "
      f"{dt.name}")


def _median_time(fn, args, repeats):
  jax.block_until_ready(fn(*args))  # compile + warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(_):
  mesh = shd.make_mesh((-1, 1, 1))
  module, params, n, desc = _model(mesh)
  b = _BATCH.value
  rng = np.random.default_rng(0)
  visual = jnp.asarray(rng.normal(size=(b, n, module.cfg.text.hidden_size)), module.dtype)
  prefix = jnp.asarray(rng.integers(0, 40, (b, PREFIX_LEN)), jnp.int32)
  suffix = jnp.asarray(rng.integers(0, 40, (b, _TEXT.value)), jnp.int32)
  suffix_len = jnp.full((b,), _TEXT.value, jnp.int32)
  text = PREFIX_LEN + 1 + _TEXT.value
  fns = {length: generate.make_generate(module, mesh, params, max_new_tokens=length, eos_ids=NO_STOP, pad_id=0)
         for length in (1, _NEW.value)}
  print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())}; {desc}; batch {b}; visual tokens N={n}, "
        f"text tokens={text}; {_NEW.value} new tokens")
  rows = []
  for r in [float(x) for x in _RATIOS.value]:
    k = n if r >= 1.0 else budget(n, r)
    keep = jnp.asarray(np.sort(np.stack([rng.permutation(n)[:k] for _ in range(b)]), axis=1), jnp.int32)
    args = (params,) + sharded.place_batch(mesh, visual, keep, prefix, suffix, suffix_len)
    ttft = _median_time(fns[1], args, _REPEATS.value)
    full = _median_time(fns[_NEW.value], args, _REPEATS.value)
    rows.append((r, k + text, ttft, b * (_NEW.value - 1) / max(full - ttft, 1e-9), full))
  print()
  print("| kept | prompt tokens | time to first token s | decode tokens/s | total s | TTFT speedup |")
  print("|---|---|---|---|---|---|")
  for r, tokens, ttft, tps, full in rows:
    print(f"| {r:.0%} | {tokens} | {ttft:.4f} | {tps:.1f} | {full:.4f} | {rows[0][2] / ttft:.2f}x |")
  counts = {length: sharded.compile_count(fn) for length, fn in fns.items()}
  ok = all(c == len(rows) for c in counts.values())
  print(f"\ncompilations per length {counts} for {len(rows)} ratios "
        f"({'once per ratio and length' if ok else 'NOT once per ratio and length'})")


if __name__ == "__main__":
  app.run(main)
