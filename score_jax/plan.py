"""Memory plan: does a config fit its mesh? The RL train step and the eval prefill are compiled ahead of
time from abstract shapes on N fake CPU devices (no weights, no data), and XLA's memory analysis is
printed per device against the accelerator's memory.

    python -m score_jax.plan --config=experiments/llava_ov_7b.py --devices=64 --device_memory=16GiB \\
        --architecture=llava-onevision-qwen2-7b-ov-hf
    python -m score_jax.plan --config=experiments/smoke.py --devices=2 --device_memory=1GiB [--config.x=y ...]

The model's shape comes from `--architecture` (a built-in config.json, `ARCHITECTURES`), else from the
config.json alone of `config.model.checkpoint` (the embedded model's when kind="embedded"). The train
step is the configured method's (visual tokens in, as from the feature cache); the eval prefill keeps
the largest of config.eval.ratios.

Exit status: 0 when both programs fit, 1 when one does not, 2 on bad input.

The numbers come from XLA's CPU compiler: the partitioning is the accelerator's, but fusion and buffer
reuse differ, and the CPU backend computes bfloat16 dots in float32, keeping float32 copies of the
weights; the table estimates those copies and the total without them. The verdict is on XLA's total
(conservative). MaxText's train_compile.py does the same from a real TPU topology.
"""
from __future__ import annotations

import collections
import functools
import os
import re
import sys
from typing import NamedTuple

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from score_jax import config_checks
from score_jax.compress.selection import budget
from score_jax.frozen_llm import FrozenLLM, answer_format
from score_jax.methods import get_method
from score_jax.models import hf_loading, sharded, sharding as shd
from score_jax.models.configs import LlavaOnevisionConfig
from score_jax.models.llava_onevision import LlavaOnevision

PROGRAM = "score_jax.plan"
DEVICES_ENV = "SCORE_JAX_PLAN_DEVICES"  # set in the re-executed process: its fake device count is right
PREFIX_LEN = 16  # text tokens before the video (a ChatML user header takes 3-5)

# Built-in model shapes, as the checkpoints' config.json holds them.
ARCHITECTURES = {
    # llava-hf/llava-onevision-qwen2-7b-ov-hf: the text model is Qwen/Qwen2-7B-Instruct's config (hidden 3584,
    # 28 layers, 28 heads, 4 KV heads, MLP 18944, rope_theta 1e6, vocab 152064), with the vocabulary grown by
    # <image> and <video> and padded to a multiple of 64 (152064 + 2 -> 152128); the vision tower is
    # SigLIP-so400m-patch14-384 at 26 layers without its head. Source: transformers
    # src/transformers/models/llava_onevision/convert_llava_onevision_weights_to_hf.py (commit 01080c62), and
    # the SigLIP defaults and token ids in configuration_llava_onevision.py (transformers 5.24.0).
    "llava-onevision-qwen2-7b-ov-hf": {
        "model_type": "llava_onevision",
        "image_token_index": 151646, "video_token_index": 151647,
        "vision_feature_layer": -1, "vision_feature_select_strategy": "full", "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True, "tie_word_embeddings": False,
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                          "num_hidden_layers": 26, "num_attention_heads": 16, "num_channels": 3,
                          "image_size": 384, "patch_size": 14, "layer_norm_eps": 1e-6,
                          "hidden_act": "gelu_pytorch_tanh", "vision_use_head": False},
        "text_config": {"model_type": "qwen2", "vocab_size": 152128, "hidden_size": 3584,
                        "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                        "num_key_value_heads": 4, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                        "hidden_act": "silu", "max_position_embeddings": 32768, "tie_word_embeddings": False,
                        "use_sliding_window": False},
    },
}

UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
  """"16GiB" -> 17179869184, "80GB" -> 80e9 (KB/MB/GB/TB decimal, KiB/MiB/GiB/TiB binary, plain bytes)."""
  m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
  if not m or m.group(2).lower() not in UNITS:
    raise ValueError(f"--device_memory={text!r}: expected a size such as 16GiB, 80GB or 512MiB.")
  return int(float(m.group(1)) * UNITS[m.group(2).lower()])


def fmt(n: int | None) -> str:
  """Bytes in GiB (MiB, KiB below one of those)."""
  if n is None:
    return "-"
  for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
    if abs(n) >= size:
      return f"{n / size:.2f} {unit}"
  return f"{n / 2**10:.1f} KiB"


def model_config(config, architecture: str = ""):
  """The LLaVA-OneVision config: a built-in architecture, else config.json of the configured folder."""
  if architecture:
    if architecture not in ARCHITECTURES:
      raise ValueError(f"--architecture={architecture!r}; built-in: {sorted(ARCHITECTURES)}.")
    return LlavaOnevisionConfig.from_hf(ARCHITECTURES[architecture])
  folder = os.path.expanduser(config.model.checkpoint)
  if config.model.kind == "embedded":
    from score_jax.embedded import base_model
    if not folder or not os.path.exists(os.path.join(folder, "config.json")):
      folder = base_model.SHIPPED_DIR  # same architecture as a build of the current generator
  elif not folder:
    raise ValueError("config.model.kind='hf' needs config.model.checkpoint (a folder with config.json), or "
                     f"pass --architecture (one of {sorted(ARCHITECTURES)}).")
  return hf_loading.parse_config(folder, LlavaOnevisionConfig.from_hf)


def text_shapes(config) -> tuple[int, int, int]:
  """(frames, suffix length, options) as `frozen_llm.load_frozen_llm` sets them."""
  if config.model.kind == "embedded":
    from score_jax.embedded import world_text
    return world_text.WORLD.frames, world_text.SUFFIX_LEN, 4
  m = config.model
  return m.get("num_frames", 32), m.get("suffix_len", 128), m.get("num_options", 4)


def per_device_bytes(tree) -> int:
  """Bytes one device holds of a tree of ShapeDtypeStructs with shardings (the largest shard)."""
  total = 0
  for leaf in jax.tree_util.tree_leaves(tree):
    shape = leaf.sharding.shard_shape(leaf.shape) if getattr(leaf, "sharding", None) is not None else leaf.shape
    total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  return total


def placed(x, sharding):
  """A ShapeDtypeStruct of `x` (an array or a struct) with `sharding`."""
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def replicated_tree(tree, mesh):
  return jax.tree_util.tree_map(lambda x: placed(x, shd.replicated(mesh)), tree)


class Program(NamedTuple):
  """One compiled program's per-device memory (bytes)."""
  name: str
  parts: dict  # our accounting of the arguments: {"frozen LLM parameters": n, ...}
  argument: int
  output: int
  alias: int
  temp: int
  code: int
  upcast: int = 0  # of `temp`: float32 copies of bfloat16 weights that only the CPU compiler makes

  @property
  def total(self) -> int:
    """Live at the peak: arguments + outputs - donated (aliased) + temporaries + code (MaxText's sum + code)."""
    return self.argument + self.output - self.alias + self.temp + self.code

  @property
  def accelerator_total(self) -> int:
    return self.total - self.upcast


def cpu_upcast_bytes(compiled, params) -> int:
  """Estimated bytes of float32 copies of bfloat16 weights in a CPU-compiled program: XLA's CPU backend
  computes bfloat16 dots in float32 and hoists the weights' conversion out of the layer loop; a TPU or
  GPU does not. Per per-device weight shape: min(weights of that shape, float32 values of that shape)."""
  weights = collections.Counter(tuple(x.sharding.shard_shape(x.shape)) for x in jax.tree_util.tree_leaves(params)
                                if x.dtype == jnp.bfloat16 and len(x.shape) >= 2)
  found = collections.Counter(tuple(int(d) for d in m.group(1).split(","))
                              for m in re.finditer(r"%\S+ = f32\[([0-9,]+)\]", compiled.as_text()))
  return sum(min(n, found[shape]) * 4 * int(np.prod(shape)) for shape, n in weights.items())


def _program(name: str, parts: dict, compiled, params) -> Program:
  m = compiled.memory_analysis()
  return Program(name, parts, m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes,
                 m.temp_size_in_bytes, m.generated_code_size_in_bytes, cpu_upcast_bytes(compiled, params))


def abstract_llm(config, mesh, architecture: str = ""):
  """A `FrozenLLM` whose params are ShapeDtypeStructs placed by the sharding rules (nothing allocated)."""
  cfg = model_config(config, architecture)
  dt = jnp.dtype(config.model.dtype)
  module = LlavaOnevision(cfg, dtype=dt, param_dtype=dt)
  shapes = hf_loading.abstract_params(module, *hf_loading.llava_dummy_inputs(cfg), method=LlavaOnevision.init_all)
  params = jax.tree_util.tree_map(placed, shapes, shd.param_shardings(shapes, mesh))
  frames, suffix_len, num_options = text_shapes(config)
  llm = FrozenLLM(cfg, module, params, None, suffix_len, frames, num_options)
  llm.__dict__["option_ids"] = np.arange(num_options, dtype=np.int32)  # token ids: any, only shapes matter
  return llm


def abstract_batch(config, llm, mesh, prefix_len: int, with_question: bool) -> dict:
  """The train step's batch (`config.batch_size` samples) as ShapeDtypeStructs split over the data axes."""
  b, ls, d = config.batch_size, llm.suffix_len, llm.cfg.text.hidden_size
  shapes = {"visual": ((b, llm.num_frames, llm.cfg.tokens_per_frame, d), config.model.dtype),
            "prefix": ((b, prefix_len), jnp.int32), "suffix": ((b, ls), jnp.int32),
            "suffix_len": ((b,), jnp.int32), "answer": ((b,), jnp.int32)}
  if answer_format(config.model) == "option_word":
    shapes["option_ids"] = ((b, llm.num_options), jnp.int32)
  if any(kind in ("jsonl", "images") for kind, _ in config_checks.parse_curriculum(config.curriculum)):
    shapes["num_options"] = ((b,), jnp.int32)
  if with_question:
    shapes["question"] = ((b, ls, d), jnp.float32)
    shapes["question_mask"] = ((b, ls), jnp.bool_)
  return {k: jax.ShapeDtypeStruct(s, dt, sharding=shd.batch_sharding(mesh, len(s))) for k, (s, dt) in shapes.items()}


def plan_train_step(config, llm, mesh, prefix_len: int = PREFIX_LEN) -> Program:
  """Compiles the configured method's RL train step from abstract state, batch and LLM parameters."""
  from score_jax import train as train_lib  # heavy (data pipelines, orbax): only here
  method = get_method(config)
  stages = config_checks.parse_curriculum(config.curriculum)
  policy = method.make_policy(config)
  tx = train_lib.make_optimizer(config, sum(s for _, s in stages))
  state = jax.eval_shape(lambda key: method.init_state(config, policy, tx, llm, key), jax.random.key(0))
  state = replicated_tree(state, mesh)
  batch = abstract_batch(config, llm, mesh, prefix_len, method.uses_question(config))
  key = placed(jax.eval_shape(lambda: jax.random.key(0)), shd.replicated(mesh))
  if config.method == "cacovid":  # one visit at the base ratio (methods/cacovid.py loops over visits)
    from score_jax.rl import cacovid_step as cs
    s = method.settings(config)
    visit = cs.make_cacovid_train_step(policy, llm.module, tx, s, llm.option_ids)
    _, t, p, _ = batch["visual"].shape
    memory = jax.eval_shape(lambda: cs.init_cacovid_memory(s, config.batch_size, t, p))
    memory = replicated_tree(memory, mesh)
    lowered = visit.lower(state, batch, memory, key, llm.params, ratio=s.base_ratio)
  else:
    lowered = method.make_train_step(config, policy, llm, tx, mesh).lower(state, batch, key, llm.params)
  parts = {"frozen LLM parameters": per_device_bytes(llm.params), "policy parameters": per_device_bytes(state.params),
           "optimizer state": per_device_bytes(state.opt_state), "batch": per_device_bytes(batch)}
  return _program("train step", parts, lowered.compile(), llm.params)


def plan_eval_prefill(config, llm, mesh, prefix_len: int = PREFIX_LEN) -> Program:
  """Compiles the eval prefill at the largest of `config.eval.ratios` (1.0: every visual token)."""
  b = config.eval.batch_size
  n = llm.num_frames * llm.cfg.tokens_per_frame
  k = budget(n, max(float(r) for r in config.eval.ratios))
  shapes = [((b, n, llm.cfg.text.hidden_size), config.model.dtype), ((b, k), jnp.int32),
            ((b, prefix_len), jnp.int32), ((b, llm.suffix_len), jnp.int32), ((b,), jnp.int32)]
  args = [jax.ShapeDtypeStruct(s, dt, sharding=shd.batch_sharding(mesh, len(s))) for s, dt in shapes]
  fn = sharded.make_prefill(llm.module, mesh, llm.params, config.rl.get("position_mode", "original"))
  parts = {"frozen LLM parameters": per_device_bytes(llm.params), "batch": per_device_bytes(args)}
  return _program(f"eval prefill ({k} of {n} tokens)", parts, fn.lower(llm.params, *args).compile(), llm.params)


ROWS = ("frozen LLM parameters", "policy parameters", "optimizer state", "batch")
XLA_ROWS = (("arguments (XLA)", "argument"), ("outputs (XLA)", "output"), ("donated, reused outputs (XLA)", "alias"),
            ("temporaries (XLA)", "temp"), ("generated code (XLA)", "code"), ("total", "total"),
            ("  of which f32 weight copies (CPU)", "upcast"), ("total on TPU/GPU (est.)", "accelerator_total"))


def format_table(programs, device_memory: int, mesh_desc: str) -> str:
  """The per-device table: our accounting of the arguments, then XLA's memory analysis and the verdict."""
  head = [f"Per-device memory on {mesh_desc}, against {fmt(device_memory)} per device"]
  w = max(len(p.name) for p in programs) + 2
  line = lambda label, vals: f"  {label:<34}" + "".join(f"{v:>{w}}" for v in vals)
  out = head + [line("", [p.name for p in programs])]
  for row in ROWS:
    out.append(line(row, [fmt(p.parts.get(row)) for p in programs]))
  for label, attr in XLA_ROWS:
    out.append(line(label, [fmt(getattr(p, attr)) for p in programs]))
  verdict = ["FITS" if p.total <= device_memory else "DOES NOT FIT" for p in programs]
  out.append(line("verdict (on the total)", verdict))
  return "\n".join(out)


def check_batches(config, mesh) -> None:
  """Both batches must split evenly over the mesh's batch axes (data x fsdp)."""
  shards = 1
  for axis in shd.BATCH_AXES:
    shards *= mesh.shape[axis]
  for key, value in (("batch_size", config.batch_size), ("eval.batch_size", config.eval.batch_size)):
    if value % shards:
      raise ValueError(f"config.{key}={value} cannot be split over the {shards} batch shards (data x fsdp) of "
                       f"mesh {dict(mesh.shape)}: use a multiple of {shards}, or another config.model.mesh.")


def plan(config, mesh, device_memory: int, architecture: str = "", prefix_len: int = PREFIX_LEN):
  """(programs, table, fits) for `config` on `mesh` (of whatever devices this process has)."""
  check_batches(config, mesh)
  llm = abstract_llm(config, mesh, architecture)
  programs = [plan_train_step(config, llm, mesh, prefix_len), plan_eval_prefill(config, llm, mesh, prefix_len)]
  desc = f"{mesh.devices.size} devices, mesh " + " x ".join(f"{k}={v}" for k, v in mesh.shape.items())
  fits = all(p.total <= device_memory for p in programs)
  return programs, format_table(programs, device_memory, desc), fits


def _devices_arg(argv) -> int | None:
  for i, a in enumerate(argv):
    if a.startswith("--devices="):
      value = a.split("=", 1)[1]
    elif a == "--devices" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    try:
      return int(value)
    except ValueError:
      return None
  return None


def ensure_fake_devices(argv) -> None:
  """Re-executes this command in a fresh process with `--devices` fake CPU devices (the device count is
  fixed when jax starts), unless this already is that process."""
  n = _devices_arg(argv)
  if n is None or n < 1 or os.environ.get(DEVICES_ENV) == str(n):
    return
  flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(n), **{DEVICES_ENV: str(n)},
             XLA_FLAGS=(flags + f" --xla_force_host_platform_device_count={n}").strip())
  sys.stdout.flush()
  os.execve(sys.executable, [sys.executable, "-m", PROGRAM, *argv[1:]], env)


def _define_flags() -> dict:
  """Command-line flags, defined only when this module runs as a program."""
  return dict(
      config=config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config()).",
                                             lock_config=True),
      devices=flags.DEFINE_integer("devices", None, "number of devices of the target mesh (simulated on CPU)"),
      device_memory=flags.DEFINE_string("device_memory", None, "memory of one device, e.g. 16GiB (v5e), 80GB"),
      architecture=flags.DEFINE_string("architecture", "", f"built-in model shape instead of "
                                       f"config.model.checkpoint's config.json: {', '.join(ARCHITECTURES)}"),
      prefix_len=flags.DEFINE_integer("prefix_len", PREFIX_LEN, "text tokens before the video"),
  )


def main(argv, flag_values: dict) -> None:
  del argv
  values = {k: v.value for k, v in flag_values.items()}
  if values["config"] is None or values["devices"] is None or values["device_memory"] is None:
    print("usage: python -m score_jax.plan --config=FILE --devices=N --device_memory=16GiB (see --help)",
          file=sys.stderr)
    sys.exit(2)
  try:
    memory = parse_bytes(values["device_memory"])
    if values["devices"] < 1 or len(jax.devices()) != values["devices"]:
      raise ValueError(f"--devices={values['devices']}: this process has {len(jax.devices())} devices "
                       f"(run it as `python -m {PROGRAM}`, which starts the right number).")
    mesh = shd.make_mesh(tuple(values["config"].model.mesh))
    _, table, fits = plan(values["config"], mesh, memory, values["architecture"], values["prefix_len"])
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(table)
  sys.exit(0 if fits else 1)


if __name__ == "__main__":
  ensure_fake_devices(sys.argv)
  app.run(functools.partial(main, flag_values=_define_flags()))
