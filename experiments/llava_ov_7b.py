"""SCORE on LLaVA-OneVision-7B (Qwen2-7B + SigLIP-so400m) with real videos and questions.

    python -m score_jax.data.benchmark_layouts --layout nextqa --src ~/data/NExTQA/train.csv --out ~/data/nextqa_train.jsonl
    python -m score_jax.cache --config=experiments/llava_ov_7b.py \\
        --config.model.checkpoint=~/models/llava-onevision-qwen2-7b-ov-hf \\
        --config.data.train_file=~/data/nextqa_train.jsonl --config.data.eval_file=~/data/videomme.jsonl
    python -m score_jax.train --config=experiments/llava_ov_7b.py --config.model.checkpoint=... (same overrides)

`config.model.checkpoint` is a local Hugging Face checkpoint folder (config.json, *.safetensors,
tokenizer and processor files), e.g. llava-hf/llava-onevision-qwen2-7b-ov-hf downloaded beforehand.
The datasets are JSONL files (`score_jax.data.jsonl_format`); `python -m score_jax.cache` runs the
frozen vision side once per video into `config.data.cache_dir`, and training/eval read the visual
tokens from there (32 frames x 196 tokens x 3584 dims in bfloat16: about 45 MB per video); without
a current cache they decode the videos on every read (slow, with a warning). Evaluate a trained
policy on `config.data.eval_file` with `python -m score_jax.eval --config=experiments/llava_ov_7b.py
--checkpoint=workdirs/llava_ov_7b` (same overrides).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import curriculum  # noqa: E402


def get_config():
  c = curriculum.get_config()
  c.method = "score"
  c.workdir = "workdirs/llava_ov_7b"
  c.batch_size = 16
  # One stage over the JSONL training set (config.data.train_file), read through the feature cache.
  c.curriculum = "jsonl:3000"

  c.model.kind = "hf"
  c.model.checkpoint = "/path/to/llava-onevision-qwen2-7b-ov-hf"  # a local folder; nothing is downloaded
  c.model.dtype = "bfloat16"
  c.model.answer_format = "letter"   # the lmms-eval multiple-choice prompt these checkpoints are evaluated with
  # lmms-eval's exact text per benchmark (each JSONL record's "task"), in its qwen_1_5 chat turns
  # (score_jax/protocol/lmms_eval_prompts.py); "hf_chat_template": the checkpoint's own template.
  c.model.prompt_style = "lmms_eval"
  # (data, fsdp, tensor): 4-way tensor parallel (7 of 28 heads, 1 of 4 KV heads per device), batches over the
  # rest. Fits 64 x 16 GiB (v5e-64) and 8 x 80 GB: `python -m score_jax.plan --devices=64 --device_memory=16GiB
  # --architecture=llava-onevision-qwen2-7b-ov-hf --config=experiments/llava_ov_7b.py` (BUILD_NOTES.md). An
  # fsdp axis makes XLA split the activations' width instead of the batch (no activation constraints).
  c.model.mesh = (-1, 1, 4)
  c.model.num_frames = 32            # uniformly sampled frames per video (LLaVA-OV's evaluation setting)
  c.model.suffix_len = 256           # question + options + instruction tokens after the video
  c.model.num_options = 4            # answer letters scored (VideoMME / MLVU: 4; NExT-QA / LongVideoBench: 5)

  c.policy.hidden = 256
  c.policy.num_layers = 1
  c.policy.num_heads = 4

  c.rl.ratio = 0.1                   # keep 627 of 6272 visual tokens
  c.rl.group_size = 8
  c.rl.ppo_epochs = 2
  c.rl.comp_weight = 0.5

  c.optim.learning_rate = 1e-4
  c.optim.warmup_steps = 100
  c.optim.weight_decay = 0.01

  c.data.train_file = "/path/to/train.jsonl"
  c.data.eval_file = "/path/to/eval.jsonl"
  c.data.image_file = ""             # image QA JSONL for a first "images:N" curriculum stage ("": none)
  c.data.cache_dir = "/path/to/feature_cache/llava_ov_7b"  # <cache_dir>/train, /eval (and /images)
  c.data.cache_batch_size = 8        # videos per vision-tower call while building the cache
  c.data.decode_threads = 8          # PyAV decoding threads while building the cache
  c.data.num_threads = 4             # grain reader threads

  c.checkpoint_every = 100
  c.keep_checkpoints = 3
  c.log_every = 10

  c.eval.source = "jsonl"            # held-out data: config.data.eval_file ("world": the generated world)
  c.eval.samples = 0                 # 0: every sample of config.data.eval_file
  c.eval.batch_size = 16             # a multiple of the data axis: 16 on 64 devices, 2 on 8
  c.eval.ratios = (1.0, 0.25, 0.1)
  c.eval.methods = ("policy", "uniform_pool", "random", "residual", "visionzip", "divprune")
  c.eval.random_seeds = 3
  return c
