"""One process of a 2-process `jax.distributed` run on loopback (used by tests/test_multiprocess.py).

    python -m score_jax.testing.multiprocess_prefill PROCESS_ID PORT CHECKPOINT OUT.npy

Each process has 4 CPU devices; the global (data=2, fsdp=1, tensor=4) mesh spans both. Every
process loads the checkpoint straight into its own shards, feeds its half of the batch, and
process 0 writes the gathered answer-position logits.
"""
from __future__ import annotations

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_NUM_CPU_DEVICES"] = "4"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from score_jax.models import hf_loading, prefill, sharded, sharding as shd  # noqa: E402


def inputs(cfg, batch: int = 4):
  rng = np.random.default_rng(0)
  v = cfg.vision
  frames = rng.normal(size=(batch, 2, v.image_size, v.image_size, 3)).astype(np.float32)
  n = 2 * cfg.tokens_per_frame
  keep = np.sort(np.stack([rng.permutation(n)[:7] for _ in range(batch)]), axis=1).astype(np.int32)
  prefix = np.tile(np.arange(3, dtype=np.int32), (batch, 1))
  suffix = np.tile(np.arange(10, 16, dtype=np.int32), (batch, 1))
  return frames, keep, prefix, suffix, np.asarray([6, 5, 4, 6][:batch], np.int32)


def main(process_id: int, port: int, folder: str, out: str):
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  mesh = shd.make_mesh((2, 1, 4))
  cfg, module, params = hf_loading.load_llava_onevision(folder, mesh=mesh)
  host = inputs(cfg)
  half = host[0].shape[0] // 2
  local = [a[process_id * half:(process_id + 1) * half] for a in host]
  glob = [jax.make_array_from_process_local_data(shd.batch_sharding(mesh, a.ndim), a) for a in local]
  visual = sharded.make_encode_video(module, mesh, params)(params, glob[0])
  logits = sharded.make_prefill(module, mesh, params)(params, visual, *glob[1:])
  full = multihost_utils.process_allgather(logits, tiled=True)
  if process_id == 0:
    np.save(out, np.asarray(full))
  jax.distributed.shutdown()


def single_process_logits(folder: str) -> np.ndarray:
  """The same computation on one device, for comparison."""
  cfg, module, params = hf_loading.load_llava_onevision(folder)
  frames, keep, prefix, suffix, lens = inputs(cfg)
  visual = prefill.encode_video(module, params, frames)
  return np.asarray(prefill.prefill_logits(module, params, visual, keep, prefix, suffix, lens))


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
