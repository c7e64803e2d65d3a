"""score_jax's prefill against the transformers (PyTorch) reference: same weights, same shapes, one run.

    python benchmarks/prefill_vs_reference.py                 # Qwen2-0.5B shape, 1024 visual + 94 text tokens
    python benchmarks/prefill_vs_reference.py --repeats=5     # steadier medians
    python benchmarks/prefill_vs_reference.py --layers=2 --hidden_size=64 --intermediate_size=128 --heads=4 \
        --kv_heads=2 --visual_tokens=64 --text_tokens=8 --matmul_size=128 --repeats=1   # smoke size (seconds)

A random `transformers.Qwen2ForCausalLM` (float32, sdpa attention; every tensor perturbed so none is a
constant) is saved with `save_pretrained` and loaded into score_jax with `hf_loading.load_qwen2`, so both
libraries run the same weights; their final hidden states are compared at every length (the run stops
if they disagree beyond `--parity_tol`: the timings would not compare equal work). Only the decoder is
timed: each library takes input embeddings [1, L, d] at positions 0..L-1 and returns the final-normed
hidden states [1, L, d] (score_jax: the jitted `Qwen2.apply`, all tokens valid; transformers:
`model.model(inputs_embeds=...)` under `torch.inference_mode()`), so the vocabulary is small (`--vocab`).

Per retention ratio (L = kept visual + text tokens) the table gives each library's median wall time of
`--repeats` calls after a warm-up, the ratio transformers s / score_jax s (>= 1: score_jax is faster), each
one's achieved GFLOP/s (analytic FLOPs, `score_jax.models.flops.prefill_flops`), and "the decoder's matmuls
alone": the 7 linear projections per layer (q, k, v, o, gate, up, down, with their biases) on [L, d] inputs
for every layer, no attention, norm, RoPE or activation, timed in both libraries (score_jax: one jitted
function, scanned over the stacked layer weights as the model is, and unrolled over per-layer copies; their
outputs are checked against torch's like the hidden states), and score_jax's prefill time over that bound;
then each library's rate on a plain `--matmul_size`^3 float32 matmul. Torch uses its default thread count.
"""
from __future__ import annotations

import functools
import os
import sys
import tempfile

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.selection import budget
from score_jax.models import hf_loading
from score_jax.models.configs import Qwen2Config
from score_jax.models.flops import prefill_flops
from score_jax.timing import median_seconds

_SHAPE = Qwen2Config()  # the defaults are Qwen2-0.5B's shape
_LAYERS = flags.DEFINE_integer("layers", _SHAPE.num_hidden_layers, "decoder layers")
_HIDDEN = flags.DEFINE_integer("hidden_size", _SHAPE.hidden_size, "model width d")
_INTERMEDIATE = flags.DEFINE_integer("intermediate_size", _SHAPE.intermediate_size, "MLP width")
_HEADS = flags.DEFINE_integer("heads", _SHAPE.num_attention_heads, "query heads")
_KV_HEADS = flags.DEFINE_integer("kv_heads", _SHAPE.num_key_value_heads, "key/value heads")
_VOCAB = flags.DEFINE_integer("vocab", 1000, "vocabulary (not timed: inputs are embeddings, no LM head)")
_VISUAL = flags.DEFINE_integer("visual_tokens", 1024, "visual tokens with all kept")
_TEXT = flags.DEFINE_integer("text_tokens", 94, "text tokens (always kept)")
_RATIOS = flags.DEFINE_list("ratios", ["1.0", "0.25", "0.10"], "retention ratios of the visual tokens")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per measurement after one warm-up (median reported)")
_MATMUL = flags.DEFINE_integer("matmul_size", 2048, "n of the plain n x n x n float32 matmul")
_PARITY_TOL = flags.DEFINE_float("parity_tol", 1e-3, "largest max|diff| / max|torch's| of the outputs")
_SEED = flags.DEFINE_integer("seed", 0, "weights and inputs")

PROJECTIONS = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
               ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj"))


def hf_config(shape: dict):
  """A transformers Qwen2Config (tied embeddings, sdpa attention) of the given shape."""
  import transformers
  cfg = transformers.Qwen2Config(**shape, rope_theta=_SHAPE.rope_theta, rms_norm_eps=_SHAPE.rms_norm_eps,
                                 tie_word_embeddings=True, use_cache=False)
  cfg._attn_implementation = "sdpa"
  return cfg


def build_models(shape: dict, seed: int):
  """(transformers Qwen2ForCausalLM, score_jax (cfg, module, params)) holding the same random weights."""
  import transformers
  from score_jax.testing import hf_reference
  with tempfile.TemporaryDirectory() as folder:
    hf = hf_reference.save_random_model(transformers.Qwen2ForCausalLM, hf_config(shape), folder, seed)
    cfg, module, params = hf_loading.load_qwen2(folder)
  return hf, (cfg, module, params)


def jax_prefill(module):
  """Jitted (params, embeds [1, L, d], positions [1, L]) -> final hidden states [1, L, d], all tokens valid."""
  return jax.jit(lambda params, x, pos: module.apply({"params": params}, x, pos))


def torch_prefill(hf):
  """embeds [1, L, d] -> final hidden states [1, L, d] of the transformers decoder (positions 0..L-1)."""
  import torch

  def run(x):
    with torch.inference_mode():
      return hf.model(inputs_embeds=x, use_cache=False).last_hidden_state
  return run


def _dense(p, h):
  """A Flax Dense layer's computation on its parameters {"kernel", ["bias"]}."""
  y = h @ p["kernel"]
  return y + p["bias"] if "bias" in p else y


def _jax_layer_matmuls(x, w):
  """One layer's 7 projections, each on an [L, d] (o: [L, heads * head size], down: [L, intermediate])
  input; [L, d] outputs summed, k and v reduced so that nothing is dead code."""
  a, m = w["self_attn"], w["mlp"]
  q, k, v = (_dense(a[n], x) for n in ("q_proj", "k_proj", "v_proj"))
  out = _dense(a["o_proj"], q) + _dense(m["down_proj"], _dense(m["gate_proj"], x) + _dense(m["up_proj"], x))
  return out, k.sum() + v.sum()


def _projections(params) -> dict:
  """The stacked weights of the 7 projections, {"self_attn": {...}, "mlp": {...}}."""
  layers = params["layers"]
  return {group: {name: layers[group][name] for g, name in PROJECTIONS if g == group}
          for group in ("self_attn", "mlp")}


def jax_matmuls_scanned(params):
  """Jitted x [L, d] -> the decoder's matmuls alone, `lax.scan` over the stacked layer weights (the
  model's layout). Every layer reads the same x (no norm to keep a chain in range)."""
  def run(weights, x):
    def layer(carry, w):
      out, extra = _jax_layer_matmuls(x, w)
      return (carry[0] + out, carry[1] + extra), None
    (total, extra), _ = jax.lax.scan(layer, (jnp.zeros_like(x), jnp.zeros((), x.dtype)), weights)
    return total, extra
  weights = _projections(params)
  fn = jax.jit(run)
  return lambda x: fn(weights, x)


def jax_matmuls_unrolled(params, num_layers: int):
  """As `jax_matmuls_scanned`, unrolled over per-layer weight copies (no slicing of stacked weights)."""
  stacked = _projections(params)
  weights = [jax.block_until_ready(jax.tree_util.tree_map(lambda a: jnp.array(a[i]), stacked))
             for i in range(num_layers)]

  def run(weights, x):
    total, extra = jnp.zeros_like(x), jnp.zeros((), x.dtype)
    for w in weights:
      out, e = _jax_layer_matmuls(x, w)
      total, extra = total + out, extra + e
    return total, extra
  fn = jax.jit(run)
  return lambda x: fn(weights, x)


def torch_matmuls(hf):
  """x [L, d] -> the same projections with `torch.nn.functional.linear` on the transformers weights."""
  import torch
  import torch.nn.functional as F
  layers = [[getattr(getattr(layer, group), name) for group, name in PROJECTIONS] for layer in hf.model.layers]

  def lin(m, h):
    return F.linear(h, m.weight, m.bias)

  def run(x):
    with torch.inference_mode():
      total, extra = torch.zeros_like(x), torch.zeros(())
      for q_p, k_p, v_p, o_p, gate_p, up_p, down_p in layers:
        q, k, v = lin(q_p, x), lin(k_p, x), lin(v_p, x)
        total = total + lin(o_p, q) + lin(down_p, lin(gate_p, x) + lin(up_p, x))
        extra = extra + k.sum() + v.sum()
      return total, extra
  return run


def matmul_rates(n: int, repeats: int, rng) -> list[tuple[str, float]]:
  """[(library, seconds)] of one n x n x n float32 matmul in JAX (jitted) and torch."""
  import torch
  a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  mm = jax.jit(jnp.matmul)
  t_jax, _ = median_seconds(mm, ja, jb, repeats=repeats)
  ta, tb = torch.from_numpy(a), torch.from_numpy(b)
  with torch.inference_mode():
    t_torch, _ = median_seconds(lambda: ta @ tb, repeats=repeats)
  return [("score_jax (XLA)", t_jax), ("transformers (PyTorch)", t_torch)]


def check_parity(what: str, tokens: int, ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
  """(max |ours - ref|, max |ref|); exits when they differ by more than `--parity_tol` relative."""
  diff, scale = float(np.max(np.abs(ours - ref))), float(np.max(np.abs(ref)))
  if not diff <= _PARITY_TOL.value * scale:
    sys.exit(f"parity FAILED ({what}, {tokens} tokens): max |diff| {diff:.3g} > {_PARITY_TOL.value} x max |ref| "
             f"{scale:.3g}; the two libraries do not compute the same thing, their timings would not compare.")
  return diff, scale


def runners(models) -> dict:
  """The timed functions, built once: {name: fn(input)} (JAX ones take jax arrays, torch ones tensors)."""
  hf, (cfg, module, params) = models
  prefill = jax_prefill(module)
  scanned, unrolled = jax_matmuls_scanned(params), jax_matmuls_unrolled(params, cfg.num_hidden_layers)
  return dict(jax=lambda x, pos: jax.block_until_ready(prefill(params, x, pos)), torch=torch_prefill(hf),
              mm_scan=lambda x: jax.block_until_ready(scanned(x)),
              mm_unrolled=lambda x: jax.block_until_ready(unrolled(x)), mm_torch=torch_matmuls(hf))


def measure(ratio: float, cfg: Qwen2Config, fns: dict, rng) -> dict:
  """One row: both prefills (after a parity check of their outputs) and the matmul-only timings."""
  import torch
  kept = budget(_VISUAL.value, ratio)
  length = kept + _TEXT.value
  x = rng.standard_normal((1, length, cfg.hidden_size), dtype=np.float32)
  jx, pos, tx = jnp.asarray(x), jnp.arange(length, dtype=jnp.int32)[None], torch.from_numpy(x)
  repeats = _REPEATS.value
  t_jax, out_jax = median_seconds(lambda: fns["jax"](jx, pos), repeats=repeats)
  t_torch, out_torch = median_seconds(lambda: fns["torch"](tx), repeats=repeats)
  row = dict(ratio=ratio, tokens=length, jax=t_jax, torch=t_torch, flops=prefill_flops(cfg, length),
             prefill_parity=check_parity("prefill", length, np.asarray(out_jax), out_torch.numpy()))
  outs = {}
  for name, x2 in (("mm_scan", jx[0]), ("mm_unrolled", jx[0]), ("mm_torch", tx[0])):
    row[name], outs[name] = median_seconds(functools.partial(fns[name], x2), repeats=repeats)
  ref = outs["mm_torch"][0].numpy()
  row["matmul_parity"] = max((check_parity(f"matmuls only ({name})", length, np.asarray(outs[name][0]), ref)
                              for name in ("mm_scan", "mm_unrolled")), key=lambda p: p[0] / p[1])
  return row


def print_tables(rows: list[dict], rates: list[tuple[str, float]], n: int) -> None:
  print("| kept | tokens | score_jax s | transformers s | ratio (transformers / score_jax) | score_jax GFLOP/s "
        "| transformers GFLOP/s | matmuls only, score_jax s (scan / unrolled) | matmuls only, transformers s "
        "| score_jax / own matmuls (scan) |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['ratio']:.0%} | {r['tokens']} | {r['jax']:.4g} | {r['torch']:.4g} | {r['torch'] / r['jax']:.2f} "
          f"| {r['flops'] / r['jax'] / 1e9:.1f} | {r['flops'] / r['torch'] / 1e9:.1f} "
          f"| {r['mm_scan']:.4g} / {r['mm_unrolled']:.4g} | {r['mm_torch']:.4g} | {r['jax'] / r['mm_scan']:.2f}x |")
  print()
  print(f"| library | {n}x{n}x{n} float32 matmul s | GFLOP/s |")
  print("|---|---|---|")
  for name, t in rates:
    print(f"| {name} | {t:.4g} | {2.0 * n ** 3 / t / 1e9:.1f} |")


def main(_):
  import torch
  import transformers
  shape = dict(vocab_size=_VOCAB.value, hidden_size=_HIDDEN.value, intermediate_size=_INTERMEDIATE.value,
               num_hidden_layers=_LAYERS.value, num_attention_heads=_HEADS.value,
               num_key_value_heads=_KV_HEADS.value)
  torch.manual_seed(_SEED.value)
  models = build_models(shape, _SEED.value)
  hf, (cfg, module, _) = models
  print(f"jax {jax.__version__}: {jax.devices()[0].device_kind} x{jax.device_count()}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, score_jax attention "
        f"{getattr(module, 'attention', 'default')!r}; torch {torch.__version__}: {torch.get_num_threads()} threads "
        f"(interop {torch.get_num_interop_threads()}), transformers {transformers.__version__} "
        f"attention {hf.config._attn_implementation!r}")
  print(f"decoder: {cfg.num_hidden_layers} layers, d={cfg.hidden_size}, intermediate {cfg.intermediate_size}, "
        f"{cfg.num_attention_heads} heads / {cfg.num_key_value_heads} kv heads, float32, random weights; vocab "
        f"{cfg.vocab_size} (not timed: embeddings in, hidden states out); {_VISUAL.value} visual tokens x ratio + "
        f"{_TEXT.value} text tokens, batch 1; median of {_REPEATS.value} after a warm-up")
  rng = np.random.default_rng(_SEED.value)
  fns = runners(models)
  rows = [measure(float(r), cfg, fns, rng) for r in _RATIOS.value]
  for key, what in (("prefill_parity", "final hidden states"), ("matmul_parity", "matmuls-only outputs")):
    diff, scale = max((r[key] for r in rows), key=lambda p: p[0] / p[1])
    print(f"parity of {what} (same weights, worst length): max |diff| {diff:.3g}, max |ref| {scale:.3g}, "
          f"relative {diff / scale:.2e} <= {_PARITY_TOL.value:g} OK")
  print()
  print_tables(rows, matmul_rates(_MATMUL.value, _REPEATS.value, rng), _MATMUL.value)


if __name__ == "__main__":
  app.run(main)
