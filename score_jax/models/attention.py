"""Multi-head attention core shared by the decoder and the vision tower, and the kernels behind it.

Which keys a query sees is said in one of two forms:
- a dense boolean mask [B, 1, Lq, Lk] (`attention_mask`): any pattern; only XLA's implementation takes it;
- `CausalLengths(lengths)`: causal attention over the first `lengths[b]` tokens of row b, the form the fused
  kernels take (cuDNN flash attention through `jax.nn.dot_product_attention(implementation="cudnn")`, Pallas
  splash attention on TPU). A sequence whose valid tokens are not a prefix (padded keep slots in the middle,
  right-padded text) gets that form from `pack_valid`: the valid tokens moved to the front in their order.

`IMPLEMENTATIONS` (`config.model.attention`; each model module has an `attention` field):
- "auto": cuDNN on GPU when the compute dtype is bfloat16/float16 and the head size suits it, splash on TPU,
  otherwise XLA with the dense mask (so CPU runs, float32 runs and parity tests take the XLA path);
- "xla": `jax.nn.dot_product_attention(implementation="xla")` with the dense mask, on every backend;
- "xla_lengths": XLA with `is_causal` + `key_value_seq_lengths` over packed rows (the fused kernels' layout,
  computed by XLA: how the packing is tested on CPU);
- "cudnn": the fused cuDNN kernel (GPU only; a clear error elsewhere);
- "splash": the splash kernel (TPU only); "splash_interpret": the same kernel interpreted, on any backend (tests).
In every implementation the softmax statistics are float32 (XLA promotes the logits to float32; cuDNN and
splash accumulate in float32), also under bfloat16 compute, as the reference implementations do.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

IMPLEMENTATIONS = ("auto", "xla", "xla_lengths", "cudnn", "splash", "splash_interpret")
DEFAULT_IMPLEMENTATION = "auto"
FUSED_DTYPES = (jnp.bfloat16, jnp.float16)  # what cuDNN's flash attention computes in
SPLASH_BLOCK = 128  # splash attention's sequence block: rows are padded up to a multiple of it


class CausalLengths(NamedTuple):
  """Causal attention where row b's keys are its first `lengths[b]` tokens (int32 [B])."""
  lengths: jnp.ndarray


def attention_mask(query_valid: jnp.ndarray | None, key_valid: jnp.ndarray, causal: bool) -> jnp.ndarray:
  """Boolean mask [B, 1, Lq, Lk]: key must be valid and, if causal, not after the query."""
  b, lk = key_valid.shape
  mask = jnp.broadcast_to(key_valid[:, None, None, :], (b, 1, lk, lk))
  if causal:
    mask = mask & jnp.tril(jnp.ones((lk, lk), dtype=bool))[None, None]
  if query_valid is not None:
    # Fully masked rows (padding queries) attend to themselves so the softmax stays finite.
    eye = jnp.eye(lk, dtype=bool)[None, None]
    mask = mask | (~query_valid[:, None, :, None] & eye)
  return mask


def resolve_implementation(implementation: str, dtype, head_size: int, backend: str | None = None) -> str:
  """The concrete implementation for `implementation` (one of IMPLEMENTATIONS) on `backend` (default: JAX's)."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation {implementation!r}; expected one of {IMPLEMENTATIONS}.")
  backend = backend or jax.default_backend()
  fused_dtype = jnp.dtype(dtype) in [jnp.dtype(d) for d in FUSED_DTYPES]
  if implementation == "auto":
    if backend in ("gpu", "cuda") and fused_dtype and head_size % 8 == 0 and head_size <= 128:
      return "cudnn"
    return "splash" if backend == "tpu" else "xla"
  if implementation == "cudnn" and backend not in ("gpu", "cuda"):
    raise ValueError(f"attention implementation 'cudnn' needs a GPU; JAX's backend is {backend!r}. "
                     "Use 'auto' (falls back to XLA) or 'xla'.")
  if implementation == "cudnn" and not fused_dtype:
    raise ValueError(f"attention implementation 'cudnn' computes in bfloat16/float16, not {jnp.dtype(dtype).name}; "
                     "set the model dtype to bfloat16 or use 'auto'.")
  if implementation == "splash" and backend != "tpu":
    raise ValueError(f"attention implementation 'splash' needs a TPU; JAX's backend is {backend!r}. "
                     "Use 'auto', 'xla' or (tests) 'splash_interpret'.")
  return implementation


def takes_lengths(implementation: str) -> bool:
  """Whether a resolved implementation takes `CausalLengths` (packed rows) rather than a dense mask."""
  return implementation != "xla"


def pack_valid(valid: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(order [B, L], lengths [B]): `order` moves each row's valid tokens to the front, in their order
  (then the invalid ones); gather with it, and scatter back with `unpack`."""
  order = jnp.argsort(~valid, axis=1, stable=True).astype(jnp.int32)
  return order, valid.sum(axis=1).astype(jnp.int32)


def take_rows(x: jnp.ndarray, order: jnp.ndarray) -> jnp.ndarray:
  """x [B, L, ...] reordered along L by `order` [B, L]."""
  idx = order.reshape(order.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, idx, axis=1)


def unpack(x: jnp.ndarray, order: jnp.ndarray) -> jnp.ndarray:
  """The inverse of `take_rows(x, order)`: rows back in their original slots."""
  return take_rows(x, jnp.argsort(order, axis=1))


def _splash(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, lengths: jnp.ndarray, interpret: bool) -> jnp.ndarray:
  """Pallas splash attention (causal; tokens past `lengths` in a segment of their own). q [B, L, H, D]."""
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm
  b, l, h, d = q.shape
  lp = -(-l // SPLASH_BLOCK) * SPLASH_BLOCK
  pad = lambda x: jnp.pad(x, ((0, 0), (0, lp - l), (0, 0), (0, 0))).transpose(0, 2, 1, 3)  # [B, H, Lp, D]
  mask = sm.MultiHeadMask([sm.CausalMask((lp, lp)) for _ in range(h)])
  kernel = sk.make_splash_mha(mask, head_shards=1, q_seq_shards=1, interpret=interpret,
                              block_sizes=_splash_blocks(lp))
  segment = (jnp.arange(lp)[None, :] >= lengths[:, None]).astype(jnp.int32)  # 0: valid, 1: padding
  scaled = (q * jnp.asarray(1.0 / np.sqrt(d), q.dtype))
  out = jax.vmap(lambda qi, ki, vi, si: kernel(qi, ki, vi, segment_ids=sk.SegmentIds(si, si)))(
      pad(scaled), pad(k), pad(v), segment)
  return out.transpose(0, 2, 1, 3)[:, :l]


@functools.lru_cache(maxsize=None)
def _splash_blocks(seq_len: int):
  from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
  blk = min(512, seq_len) if seq_len % min(512, seq_len) == 0 else SPLASH_BLOCK
  return sk.BlockSizes(block_q=blk, block_kv=blk, block_kv_compute=blk, block_q_dkv=blk, block_kv_dkv=blk,
                       block_kv_dkv_compute=blk, block_q_dq=blk, block_kv_dq=blk)


def multihead_attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray,
                        mask: jnp.ndarray | CausalLengths | None, implementation: str = "xla") -> jnp.ndarray:
  """Softmax attention with grouped KV heads. q [B, L, H, D], k/v [B, S, Hkv, D] -> [B, L, H, D].

  `mask`: `CausalLengths` (run by `implementation`, a resolved one: see `resolve_implementation`), a dense
  boolean [B, 1, L, S] (always XLA: generation's cache masks), or None (every key: XLA, or cuDNN when
  `implementation` is "cudnn"; the splash path is wired for causal decoder rows only)."""
  if not isinstance(mask, CausalLengths):
    impl = "cudnn" if implementation == "cudnn" and mask is None else "xla"
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=impl)
  lengths = mask.lengths
  if implementation in ("splash", "splash_interpret"):
    return _splash(q, k, v, lengths, interpret=implementation == "splash_interpret")
  impl = "cudnn" if implementation == "cudnn" else "xla"
  return jax.nn.dot_product_attention(q, k, v, is_causal=True, query_seq_lengths=lengths,
                                      key_value_seq_lengths=lengths, implementation=impl)
