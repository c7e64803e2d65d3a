"""Two processes joined by `jax.distributed` on loopback give the single-process logits."""
import os
import subprocess
import sys

import numpy as np
import portpicker
import pytest

transformers = pytest.importorskip("transformers")

from score_jax.testing import hf_reference as ref  # noqa: E402
from score_jax.testing.multiprocess_prefill import single_process_logits  # noqa: E402


def test_two_process_prefill_matches_single_process(tmp_path):
  folder = str(tmp_path / "ckpt")
  ref.save_random_model(transformers.LlavaOnevisionForConditionalGeneration,
                        ref.tiny_llava_config(vision=ref.tiny_siglip_config(image_size=16)), folder)
  port = portpicker.pick_unused_port()
  out = str(tmp_path / "logits.npy")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
  procs = [subprocess.Popen([sys.executable, "-m", "score_jax.testing.multiprocess_prefill", str(i), str(port),
                             folder, out], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = []
  for p in procs:
    try:
      logs.append(p.communicate(timeout=240)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  assert all(p.returncode == 0 for p in procs), "\n".join(log[-3000:] for log in logs)
  np.testing.assert_allclose(np.load(out), single_process_logits(folder), atol=1e-5)
