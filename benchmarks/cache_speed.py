"""RL training step fed from decoded video vs from the feature cache, on the embedded-sized model.

    python benchmarks/cache_speed.py                         # 16 videos, 30 s at 24 fps, 320x240
    python benchmarks/cache_speed.py --videos=8 --seconds=4 --steps=3   # quicker

Writes real H.264 mp4 files (libx264, yuv420p, like downloaded videos) and a JSONL dataset, saves an
embedded-sized LLaVA-OneVision (64x64 input, 16 tokens per frame, random weights) as a checkpoint
folder, builds the feature cache, then times SCORE train steps (`make_train_step` with a
`ScorePolicy`, 8 frames per video) fed by
  (a) decoded video: PyAV decode + resize + normalise + frozen vision encode + RL step;
  (b) the feature cache: ArrayRecord read (sha256-checked) + RL step.
Both read through the same grain iterator (same threads, prefetch, shuffling). Each pipeline first
compiles (two warm-up steps on a batch built serially: the fresh state and the state a step returns
compile separately), then a fresh iterator is started and `--steps` steps are timed from its first
batch on (total time / steps), so nothing was prefetched for free during compilation. Everything
is measured in this one run. A serial breakdown of one batch (data, vision encode, RL step) is
printed too.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's score_jax

from absl import app, flags  # noqa: E402
import jax
import jax.numpy as jnp
import numpy as np
import optax

from score_jax.compress.policy import ScorePolicy
from score_jax.data import feature_cache as fc
from score_jax.data import jsonl_format as jf
from score_jax.data import video_decode as vd
from score_jax.data.pipeline import make_iterator
from score_jax.embedded.model_config import embedded_config
from score_jax.embedded.world_text import WorldText
from score_jax.models import hf_loading, hf_saving, prefill
from score_jax.models.llava_onevision import LlavaOnevision
from score_jax.models.prompt import PromptEncoder
from score_jax.rl.train_step import RLSettings, init_train_state, make_train_step
from score_jax.testing.random_params import numpy_params

_VIDEOS = flags.DEFINE_integer("videos", 16, "mp4 files written")
_SECONDS = flags.DEFINE_float("seconds", 30.0, "length of each video (NExT-QA: 44 s on average)")
_FPS = flags.DEFINE_integer("fps", 24, "frame rate of the videos")
_SIZE = flags.DEFINE_list("size", ["320", "240"], "width,height of the videos")
_FRAMES = flags.DEFINE_integer("frames", 8, "frames sampled per video (the embedded model's 8)")
_BATCH = flags.DEFINE_integer("batch", 8, "videos per training step")
_STEPS = flags.DEFINE_integer("steps", 8, "timed steps per pipeline (after compilation)")
_THREADS = flags.DEFINE_integer("threads", 2, "grain reader threads (both pipelines)")
_WORKDIR = flags.DEFINE_string("workdir", None, "where videos, model and cache go (default: a temp dir)")

SUFFIX_LEN = 48
SHAPES = ["square", "circle", "triangle", "cross"]


def make_model(folder: str):
  text = WorldText.create()
  cfg = embedded_config(len(text.tokenizer), *text.special_ids())
  module = LlavaOnevision(cfg)
  params = numpy_params(lambda k, *a: module.init(k, *a, method=LlavaOnevision.init_all),
                        *hf_loading.llava_dummy_inputs(cfg))
  hf_saving.save_llava_onevision(folder, cfg, params, text.tokenizer)


def make_videos(root: str, n: int, seconds: float, fps: int, width: int, height: int) -> str:
  """n videos of a square moving over a textured background; one question each."""
  os.makedirs(os.path.join(root, "videos"), exist_ok=True)
  rng = np.random.default_rng(0)
  t = int(round(seconds * fps))
  y, x = np.mgrid[0:height, 0:width]
  records = []
  for i in range(n):
    base = np.stack([(x * (i + 1)) % 256, (y * 3) % 256, ((x + y) * 2) % 256], -1).astype(np.uint8)
    frames = np.repeat(base[None], t, axis=0)
    pos = rng.integers(0, [height - 32, width - 32])
    vel = rng.integers(-3, 4, 2)
    for j in range(t):
      py, px = np.clip(pos + vel * j, 0, [height - 32, width - 32])
      frames[j, py:py + 32, px:px + 32] = rng.integers(0, 256, 3, dtype=np.uint8)
    name = f"videos/v{i:03d}.mp4"
    vd.write_video(os.path.join(root, name), frames, fps=fps, lossless=False)
    records.append({"id": f"q{i}", "video": name, "question": "what shape is moving",
                    "options": SHAPES, "answer": "ABCD"[i % 4]})
  path = os.path.join(root, "data.jsonl")
  jf.write_jsonl(records, path)
  return path


def main(_):
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="cache_speed_")
  width, height = (int(v) for v in _SIZE.value)
  model_dir, cache_dir = os.path.join(workdir, "model"), os.path.join(workdir, "cache")
  t0 = time.perf_counter()
  make_model(model_dir)
  dataset = make_videos(workdir, _VIDEOS.value, _SECONDS.value, _FPS.value, width, height)
  t_write = time.perf_counter() - t0

  encoder = fc.VisionEncoder.load(model_dir)
  t0 = time.perf_counter()
  report = fc.build_cache(dataset, cache_dir, encoder, _FRAMES.value, batch_size=_BATCH.value, decode_threads=2)
  t_cache = time.perf_counter() - t0

  cfg, module, llm_params = hf_loading.load_llava_onevision(model_dir)
  prompts = PromptEncoder.from_folder(model_dir)
  option_ids = jnp.asarray(prompts.option_token_ids(4))
  policy = ScorePolicy(hidden=64, num_layers=1, num_heads=4)
  settings = RLSettings(ratio=0.1, group_size=8, ppo_epochs=2)
  tx = optax.adam(1e-3)
  shape = (1, _FRAMES.value, cfg.tokens_per_frame, cfg.text.hidden_size)
  step = make_train_step(policy, module, tx, settings, option_ids)
  encode = jax.jit(lambda p, f: prefill.encode_video(module, p, f))

  ds = jf.read_jsonl(dataset)
  sources = {"decoded video": fc.VideoSampleSource(ds.samples, _FRAMES.value, encoder.preprocess),
             "feature cache": fc.CachedFeatureSource(cache_dir, dataset_path=dataset)}
  text_keys = ("prefix", "suffix", "suffix_len", "answer")

  def batches(source):
    it = make_iterator(source, _BATCH.value, seed=0, num_threads=_THREADS.value)
    for b in it:
      yield fc.model_batch(b, prompts, SUFFIX_LEN, encoder.preprocess)

  def run_step(state, b, i):
    batch = {k: b[k] for k in text_keys}
    batch["visual"] = b["visual"] if "visual" in b else encode(llm_params, b["frames"])
    state, metrics = step(state, batch, jax.random.key(i), llm_params)
    jax.block_until_ready(metrics)
    return state

  def serial_batch(source):
    """One batch built in the main thread, with its data / vision-encode times."""
    t0 = time.perf_counter()
    items = [source[j] for j in range(_BATCH.value)]
    b = fc.model_batch({k: np.stack([x[k] for x in items]) for k in items[0]}, prompts, SUFFIX_LEN,
                       encoder.preprocess)
    t_data, t_enc = time.perf_counter() - t0, 0.0
    if "frames" in b:
      jax.block_until_ready(encode(llm_params, b["frames"]))  # compile first: time the call only
      t0 = time.perf_counter()
      b["visual"] = jax.block_until_ready(encode(llm_params, b["frames"]))
      t_enc = time.perf_counter() - t0
    return b, t_data, t_enc

  rows = {}
  for name, source in sources.items():
    state = init_train_state(policy, tx, shape, jax.random.key(0))
    b, t_data, t_enc = serial_batch(source)
    for i in range(2):  # warm-up: compiles for the fresh state, then for the state a step returns
      state = run_step(state, b, -1 - i)
    t0 = time.perf_counter()
    state = run_step(state, b, -3)  # the state is donated
    t_step = time.perf_counter() - t0
    # The timed run starts a fresh iterator after compiling, so no data was prefetched for free.
    it = batches(source)
    times = []
    start = time.perf_counter()
    for i in range(_STEPS.value):
      t0 = time.perf_counter()
      state = run_step(state, next(it), i)
      times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    rows[name] = (total / _STEPS.value, float(np.median(times)), t_data, t_enc, t_step)

  print(f"device: {jax.devices()[0].device_kind} x{len(jax.devices())} (host CPUs: {os.cpu_count()}); "
        f"model: embedded-sized LLaVA-OV (64x64 input, {cfg.tokens_per_frame} tokens/frame, "
        f"d={cfg.text.hidden_size}), random weights")
  print(f"videos: {_VIDEOS.value} x {_SECONDS.value:g} s at {_FPS.value} fps, {width}x{height}, H.264 yuv420p; "
        f"{_FRAMES.value} frames sampled per video; batch {_BATCH.value}; RL: group {settings.group_size}, "
        f"ratio {settings.ratio}, {settings.ppo_epochs} PPO epochs; grain threads {_THREADS.value}")
  print(f"setup: writing videos + model {t_write:.1f} s; building the cache {t_cache:.1f} s "
        f"({report.entries} entries)\n")
  print(f"| pipeline | s/step ({_STEPS.value} steps, total / steps) | s/step median | one batch serially: data s "
        "| vision encode s | RL step s |")
  print("|---|---|---|---|---|---|")
  for name, (mean, med, t_data, t_enc, t_step) in rows.items():
    print(f"| {name} | {mean:.3f} | {med:.3f} | {t_data:.3f} | {t_enc:.3f} | {t_step:.3f} |")
  ratio = rows["decoded video"][0] / rows["feature cache"][0]
  print(f"\nspeedup of training from the cache (s/step, total / steps): {ratio:.1f}x")
  print(json.dumps({"speedup": round(ratio, 2), "steps": _STEPS.value}))


if __name__ == "__main__":
  app.run(main)
