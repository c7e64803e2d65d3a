"""Time to first token (TTFT) per stage: video decode, vision tower, SCORE policy, compressed prefill, at 100% /
25% / 10% of the visual tokens kept, next to the Amdahl bounds of that speedup.

    python benchmarks/ttft.py                                   # the embedded model, its world's 8 frames
    python benchmarks/ttft.py --shape=qwen2_0_5b --frames=8     # random LLaVA-OV-0.5B-shaped model
    python benchmarks/ttft.py --shape=qwen2_0_5b --frames=1 --vision_layers=1 --decoder_layers=1 --repeats=1

Stages, each timed on its own (median of `--repeats` calls after a warm-up, `jax.block_until_ready`):
  decode   an H.264 mp4 (written at the start with `video_decode.write_video` from the generated world's
           frames) read back with `video_decode.decode_video`, resized and normalised
           (`image_preprocess.preprocess_frames`) and put on the device;
  vision   `prefill.encode_video` jitted: SigLIP tower, projector, 2x2 bilinear pooling;
  policy   the SCORE policy's keep logits and top-k (`train_step.policy_keep_indices`), built as
           `methods.score.make_policy` builds it for the shape's experiment config (random weights: the
           cost does not depend on them); none at 100%;
  prefill  `sharded.make_prefill` on the kept tokens up to the first token's logits.
Decode and vision do the same work at every ratio and are timed once.

Bounds on the speedup at ratio r (k kept of N visual tokens), both from the same run:
  FLOP bound  (F_vision + F_prefill(N)) / (F_vision + F_policy(k) + F_prefill(k)), analytic FLOPs of the
              vision side and the decoder (`score_jax.models.flops`), the policy's counted by XLA (`xla_flops`);
  time bound  T_total(100%) / (T_decode + T_vision + T_policy(k) + T_prefill(100%) * F_prefill(k) / F_prefill(N)):
              every stage as measured, the prefill as if it shrank exactly with its FLOPs.
The second table gives those FLOPs per stage; the third puts the policy next to the full prefill it saves:
measured here, and in FLOPs here and at the LLaVA-OV-7B shape (32 frames x 196 tokens, Qwen2-7B decoder, the
policy of experiments/llava_ov_7b.py; XLA's count from abstract shapes, nothing allocated); the last gives
the 7B FLOPs per stage and FLOP bound per ratio.

Shapes: "embedded" is the shipped embedded model (`base_model.ensure_base_model()`) on one of its world's
videos and questions; "qwen2_0_5b" is a random LLaVA-OV-0.5B-shaped model: SigLIP-so400m at 384 px (width
1152, MLP 4304, 16 heads, 14 px patches: 729 patches pooled to 196 tokens per frame; 26 layers: so400m has
27, LLaVA-OV reads the penultimate one's output, and its HF checkpoints keep 26, as
`score_jax.plan.ARCHITECTURES`) and the Qwen2-0.5B decoder (`Qwen2Config` defaults), with `--text_tokens`
random question tokens. Its mp4 holds the world's 64 px frames scaled up to `--video_size` (smooth content:
decoding is cheaper than for a real video of that size). At 8 frames the vision side is 5.2 TFLOPs per call
and the full prefill 1.3 (the run takes several minutes on 2 CPU cores); `--vision_layers` /
`--decoder_layers` make it smaller for a quick look (the last command above; the tables then describe that
smaller model). One sample, on the first JAX device. Seconds are printed to 4 significant digits.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import tempfile

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from score_jax.compress.selection import budget
from score_jax.data import image_preprocess, video_decode
from score_jax.embedded import world_text
from score_jax.methods import score
from score_jax.models import attention, prefill, sharded, sharding as shd
from score_jax.models.configs import LlavaOnevisionConfig, Qwen2Config
from score_jax.models.flops import prefill_flops, vision_flops, xla_flops
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.plan import ARCHITECTURES
from score_jax.rl.train_step import policy_keep_indices
from score_jax.timing import median_seconds
from score_jax.testing.smoke import experiment_config

_SHAPE = flags.DEFINE_enum("shape", "embedded", ["embedded", "qwen2_0_5b"],
                           "the embedded model, or a random LLaVA-OV-0.5B-shaped model")
_FRAMES = flags.DEFINE_integer("frames", 8, "video frames (qwen2_0_5b; the embedded model reads its world's)")
_VISION_LAYERS = flags.DEFINE_integer("vision_layers", 0, "SigLIP layers run (qwen2_0_5b; 0: all 26)")
_DECODER_LAYERS = flags.DEFINE_integer("decoder_layers", 0, "decoder layers (qwen2_0_5b; 0: all 24)")
_TEXT = flags.DEFINE_integer("text_tokens", 64, "question tokens after the video (qwen2_0_5b and the 7B count)")
_VIDEO_SIZE = flags.DEFINE_integer("video_size", 0, "side of the mp4's frames (0: the vision tower's input size)")
_REPEATS = flags.DEFINE_integer("repeats", 3, "timed calls per stage and ratio (median reported)")
_RATIOS = flags.DEFINE_list("ratios", ["1.0", "0.25", "0.10"], "retention ratios (the first is the baseline)")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype (qwen2_0_5b)")
_ATTENTION = flags.DEFINE_string("attention", attention.DEFAULT_IMPLEMENTATION,
                                 "attention implementation (score_jax/models/attention.py)")

PREFIX_LEN = 14  # the chat header before the video (random ids for qwen2_0_5b)
OV_7B = LlavaOnevisionConfig.from_hf(ARCHITECTURES["llava-onevision-qwen2-7b-ov-hf"])
OV_7B_FRAMES = 32
EXPERIMENTS = {"embedded": "curriculum", "qwen2_0_5b": "llava_ov_0_5b", "7b": "llava_ov_7b"}


@dataclasses.dataclass
class Setup:
  module: LlavaOnevision
  params: dict
  frames: np.ndarray  # uint8 [T, H, W, 3]: what the mp4 holds
  prefix: jnp.ndarray
  suffix: jnp.ndarray
  suffix_len: jnp.ndarray
  desc: str


def _world_frames(num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
  """`num_frames` frames of generated world videos (as many videos as needed) and the first one's sample."""
  samples = [world_text.sample("video", rng) for _ in range(-(-num_frames // world_text.WORLD.frames))]
  return np.concatenate([s["frames"] for s in samples])[:num_frames], samples[0]


def _setup(mesh, rng: np.random.Generator) -> Setup:
  if _SHAPE.value == "embedded":
    from score_jax.embedded import base_model
    from score_jax.embedded.batches import encode_text
    from score_jax.models import hf_loading
    folder = base_model.ensure_base_model()
    cfg, module, params = hf_loading.load_llava_onevision(folder, mesh=mesh, attention=_ATTENTION.value)
    frames, sample = _world_frames(world_text.WORLD.frames, rng)
    text = world_text.WorldText.from_folder(folder)
    enc = encode_text([sample["question"]], [sample["options"]], text.prompts, text.suffix_len)
    n = int(enc["suffix_len"][0])  # one sample: no right padding
    return Setup(module, params, frames, jnp.asarray(enc["prefix"]), jnp.asarray(enc["suffix"][:, :n]),
                 jnp.asarray(enc["suffix_len"]),
                 f"embedded model (SigLIP {cfg.vision.num_hidden_layers} layer(s), d={cfg.vision.hidden_size}; "
                 f"decoder {cfg.text.num_hidden_layers} layers, d={cfg.text.hidden_size})")
  dt = jnp.dtype(_DTYPE.value)
  vision = OV_7B.vision
  if _VISION_LAYERS.value:
    vision = dataclasses.replace(vision, num_hidden_layers=_VISION_LAYERS.value)
  text = Qwen2Config(tie_word_embeddings=True)  # the defaults are Qwen2-0.5B's shape
  if _DECODER_LAYERS.value:
    text = dataclasses.replace(text, num_hidden_layers=_DECODER_LAYERS.value)
  cfg = LlavaOnevisionConfig(vision=vision, text=text)
  module = LlavaOnevision(cfg, dtype=dt, param_dtype=dt, attention=_ATTENTION.value)
  params = sharded.init_llava_params(module, mesh, jax.random.key(0))
  frames, _ = _world_frames(_FRAMES.value, rng)
  prefix = jnp.asarray(rng.integers(0, 1000, (1, PREFIX_LEN)), jnp.int32)
  suffix = jnp.asarray(rng.integers(0, 1000, (1, _TEXT.value)), jnp.int32)
  return Setup(module, params, frames, prefix, suffix, jnp.asarray([_TEXT.value], jnp.int32),
               f"random LLaVA-OV-0.5B shape (SigLIP {vision.num_hidden_layers} layers at {vision.image_size} px; "
               f"Qwen2-0.5B decoder, {cfg.text.num_hidden_layers} layers, d={cfg.text.hidden_size}), {dt.name}")


def make_policy(name: str):
  """The SCORE policy network as `methods.score.make_policy` builds it for experiments/<name>.py."""
  return score.make_policy(experiment_config(name))


def policy_flops(policy, visual_shape, dtype, k: int) -> float:
  """XLA's FLOP count of the policy's scoring and top-k on visual tokens [B, T, P, d], from abstract shapes
  (params by `jax.eval_shape` of its init); read off the lowered program: compiling the 7B-shaped one
  takes seconds and counts the same matmuls (within 0.1%)."""
  visual = jax.ShapeDtypeStruct(visual_shape, dtype)
  params = jax.eval_shape(policy.init, jax.random.key(0), visual)["params"]
  return xla_flops(lambda p, v: policy_keep_indices(policy, p, v, k), params, visual, optimized=False)


def decode_fn(path: str, num_frames: int, image_size: int, dtype):
  """mp4 -> normalised frames [1, T, S, S, 3] on the device."""
  settings = image_preprocess.PreprocessSettings(image_size)

  def run():
    raw = video_decode.decode_video(path, num_frames)
    return jnp.asarray(image_preprocess.preprocess_frames(raw, settings)[None], dtype)
  return run


def flop_bound(base: dict, row: dict) -> float:
  """Speedup over `base` (all tokens, no policy) if time followed the FLOPs of vision, policy and prefill."""
  return (base["f_vision"] + base["f_prefill"]) / (row["f_vision"] + row["f_policy"] + row["f_prefill"])


def time_bound(base: dict, row: dict) -> float:
  """Speedup over `base` with every stage as measured and the full prefill's time scaled by its FLOPs."""
  return base["ttft"] / (row["decode"] + row["vision"] + row["policy"]
                         + base["prefill"] * row["f_prefill"] / base["f_prefill"])


def ttft_table(rows: list[dict]) -> str:
  """Markdown: per ratio each stage's seconds, TTFT, speedup over the first row, and both bounds."""
  base = rows[0]
  lines = ["| kept | visual tokens | prompt tokens | decode s | vision s | policy s | prefill s | TTFT s | speedup "
           "| FLOP bound | speedup / FLOP bound | time bound | speedup / time bound |", "|" + "---|" * 13]
  for r in rows:
    speedup, flops_b, time_b = base["ttft"] / r["ttft"], flop_bound(base, r), time_bound(base, r)
    lines.append(f"| {r['ratio']:.0%} | {r['k']} | {r['tokens']} | {r['decode']:.4g} | {r['vision']:.4g} | "
                 f"{r['policy']:.4g} | {r['prefill']:.4g} | {r['ttft']:.4g} | {speedup:.2f}x | {flops_b:.2f}x | "
                 f"{speedup / flops_b:.0%} | {time_b:.2f}x | {speedup / time_b:.0%} |")
  return "\n".join(lines)


def policy_share_table(rows: list[dict], shape_name: str, ov7b: list[dict]) -> str:
  """Markdown: the policy's cost as a share of the full (first-row) prefill's, measured and in FLOPs."""
  base = rows[0]
  lines = ["| shape | kept | measure | policy | full prefill | policy / full prefill |", "|---|---|---|---|---|---|"]
  for r in rows[1:]:
    lines.append(f"| {shape_name} | {r['ratio']:.0%} | seconds (measured) | {r['policy']:.4g} | "
                 f"{base['prefill']:.4g} | {r['policy'] / base['prefill']:.2%} |")
    lines.append(f"| {shape_name} | {r['ratio']:.0%} | GFLOPs | {r['f_policy'] / 1e9:.4g} | "
                 f"{base['f_prefill'] / 1e9:.4g} | {r['f_policy'] / base['f_prefill']:.2%} |")
  for r in ov7b[1:]:
    lines.append(f"| LLaVA-OV-7B | {r['ratio']:.0%} | GFLOPs | {r['f_policy'] / 1e9:.4g} | "
                 f"{ov7b[0]['f_prefill'] / 1e9:.4g} | {r['f_policy'] / ov7b[0]['f_prefill']:.2%} |")
  return "\n".join(lines)


def ov7b_flops(ratios: list[float], text_tokens: int) -> list[dict]:
  """FLOPs per stage at the LLaVA-OV-7B shape (32 frames x 196 tokens) for each ratio (0 policy at 100%)."""
  cfg = OV_7B
  n = OV_7B_FRAMES * cfg.tokens_per_frame
  shape = (1, OV_7B_FRAMES, cfg.tokens_per_frame, cfg.text.hidden_size)
  policy = make_policy(EXPERIMENTS["7b"])
  dtype = jnp.dtype(experiment_config(EXPERIMENTS["7b"]).model.dtype)
  rows = []
  for r in ratios:
    k = n if r >= 1.0 else budget(n, r)
    rows.append({"ratio": r, "k": k, "f_vision": vision_flops(cfg, OV_7B_FRAMES),
                 "f_policy": 0.0 if k == n else policy_flops(policy, shape, dtype, k),
                 "f_prefill": prefill_flops(cfg.text, k + PREFIX_LEN + 1 + text_tokens)})
  return rows


def flop_bound_table(rows: list[dict]) -> str:
  """Markdown: per ratio each stage's FLOPs and the FLOP bound on the speedup over the first row."""
  base = rows[0]
  lines = ["| kept | visual tokens | vision GFLOPs | policy GFLOPs | prefill GFLOPs | FLOP bound |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['ratio']:.0%} | {r['k']} | {r['f_vision'] / 1e9:.4g} | {r['f_policy'] / 1e9:.4g} | "
                 f"{r['f_prefill'] / 1e9:.4g} | {flop_bound(base, r):.2f}x |")
  return "\n".join(lines)


def time_front(s: Setup, repeats: int) -> tuple[jnp.ndarray, float, float, int]:
  """(visual tokens [1, T, P, d], decode seconds, vision seconds, mp4 side): the stages every ratio shares."""
  t, size = len(s.frames), s.module.cfg.vision.image_size
  side = _VIDEO_SIZE.value or size
  with tempfile.TemporaryDirectory() as tmp:
    path = video_decode.write_video(os.path.join(tmp, "video.mp4"),
                                    image_preprocess.resize_frames(s.frames, side), lossless=False)
    decode = decode_fn(path, t, size, s.module.dtype)
    frames = decode()
    t_decode = median_seconds(decode, repeats=repeats)[0]
  encode = jax.jit(functools.partial(prefill.encode_video, s.module))
  return encode(s.params, frames), t_decode, median_seconds(encode, s.params, frames, repeats=repeats)[0], side


def time_ratio(s: Setup, fill, select, policy, visual, ratio: float, repeats: int) -> dict:
  """Policy and prefill seconds and FLOPs at one retention ratio (no policy when every token is kept)."""
  _, t, p, _ = visual.shape
  n, text = t * p, s.prefix.shape[1] + 1 + s.suffix.shape[1]
  k = n if ratio >= 1.0 else budget(n, ratio)
  if k == n:
    keep, t_policy, f_policy = prefill.all_keep_indices(1, n), 0.0, 0.0
  else:
    keep = select(visual, k)
    t_policy = median_seconds(lambda v: select(v, k), visual, repeats=repeats)[0]
    f_policy = policy_flops(policy, visual.shape, visual.dtype, k)
  flat = visual.reshape(1, n, -1)
  t_prefill = median_seconds(fill, s.params, flat, keep, s.prefix, s.suffix, s.suffix_len, repeats=repeats)[0]
  return {"ratio": ratio, "k": k, "tokens": k + text, "policy": t_policy, "prefill": t_prefill,
          "f_vision": vision_flops(s.module.cfg, t), "f_policy": f_policy,
          "f_prefill": prefill_flops(s.module.cfg.text, k + text)}


def main(_):
  repeats, ratios = _REPEATS.value, [float(x) for x in _RATIOS.value]
  if ratios[0] != 1.0:
    raise SystemExit(f"--ratios={_RATIOS.value}: the first ratio is the baseline and must be 1.0.")
  mesh = shd.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  s = _setup(mesh, np.random.default_rng(0))
  visual, t_decode, t_vision, side = time_front(s, repeats)
  policy = make_policy(EXPERIMENTS[_SHAPE.value])
  if policy.query_conditioned:
    raise SystemExit(f"experiments/{EXPERIMENTS[_SHAPE.value]}.py: a question-conditioned policy is not timed here.")
  select = functools.partial(policy_keep_indices, policy, jax.jit(policy.init)(jax.random.key(1), visual)["params"])
  fill = sharded.make_prefill(s.module, mesh, s.params)
  _, t, p, _ = visual.shape
  print(f"device: {jax.devices()[0].device_kind}; {s.desc}; {t} frames x {p} tokens = N={t * p} visual tokens, "
        f"{s.prefix.shape[1] + 1 + s.suffix.shape[1]} text tokens; video {side}x{side} H.264; policy of "
        f"experiments/{EXPERIMENTS[_SHAPE.value]}.py (hidden {policy.hidden}, {policy.num_layers} layer(s)); "
        f"{repeats} timed calls per stage")
  rows = []
  for r in ratios:
    row = time_ratio(s, fill, select, policy, visual, r, repeats)
    rows.append(dict(row, decode=t_decode, vision=t_vision, ttft=t_decode + t_vision + row["policy"] + row["prefill"]))
  ov7b = ov7b_flops(ratios, _TEXT.value)
  print("\n## Time to first token per stage\n")
  print(ttft_table(rows))
  print(f"\n## FLOPs per stage ({_SHAPE.value})\n")
  print(flop_bound_table(rows))
  print("\n## Policy cost as a share of the full prefill\n")
  print(policy_share_table(rows, _SHAPE.value, ov7b))
  print(f"\n## LLaVA-OV-7B FLOPs per stage ({OV_7B_FRAMES} frames x {OV_7B.tokens_per_frame} tokens, "
        f"{PREFIX_LEN + 1 + _TEXT.value} text tokens)\n")
  print(flop_bound_table(ov7b))


if __name__ == "__main__":
  app.run(main)
