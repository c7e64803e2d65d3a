"""SCORE on LLaVA-OneVision-0.5B (Qwen2-0.5B + SigLIP-so400m) with real videos and questions.

    python -m score_jax.cache --config=experiments/llava_ov_0_5b.py \\
        --config.model.checkpoint=~/models/llava-onevision-qwen2-0.5b-ov-hf \\
        --config.data.train_file=~/data/nextqa_train.jsonl --config.data.eval_file=~/data/videomme.jsonl
    python -m score_jax.train --config=experiments/llava_ov_0_5b.py --config.model.checkpoint=... (same overrides)

The small sibling of `llava_ov_7b.py` (same fields): fits one accelerator, a good first run before
the 7B model. Visual tokens are cached as in the 7B config (32 frames x 196 tokens x 896 dims in
float32: about 22 MB per video).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import llava_ov_7b  # noqa: E402


def get_config():
  c = llava_ov_7b.get_config()
  c.workdir = "workdirs/llava_ov_0_5b"
  c.batch_size = 32
  c.curriculum = "jsonl:2000"

  c.model.checkpoint = "/path/to/llava-onevision-qwen2-0.5b-ov-hf"
  c.model.dtype = "float32"
  c.model.mesh = (-1, 1, 1)          # data parallel: the 0.5B model fits on every device

  c.policy.hidden = 128

  c.optim.learning_rate = 3e-4

  c.data.cache_dir = "/path/to/feature_cache/llava_ov_0_5b"
  c.data.cache_batch_size = 16

  c.eval.batch_size = 16
  return c
