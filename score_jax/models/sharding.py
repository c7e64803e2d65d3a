"""Device mesh and the logical-axis rules that place every parameter of the frozen LLM.

Two tables, both plain data:
- `PARAM_LOGICAL_AXES`: parameter-path regex -> one logical axis name per array dimension.
- `LOGICAL_TO_MESH`: logical axis -> mesh axis (or None = replicated along that dimension).

Mesh axes: `data` (batch), `fsdp` (batch and parameter shards, ZeRO-3 style), `tensor` (heads / MLP /
vocabulary split, Megatron style). A dimension whose size does not divide by its mesh axis is kept
replicated rather than failing, so tiny test models run on any mesh.
"""
from __future__ import annotations

import math

import re
from typing import Any, Mapping, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

PARAM_LOGICAL_AXES: tuple[tuple[str, tuple[str | None, ...]], ...] = (
    # Qwen2 decoder
    (r"(^|/)embed_tokens/embedding$", ("vocab", "embed")),
    (r"(^|/)lm_head/kernel$", ("embed", "vocab")),
    (r"(^|/)layers/self_attn/(q_proj|k_proj|v_proj)/kernel$", ("layers", "embed", "heads")),
    (r"(^|/)layers/self_attn/(q_proj|k_proj|v_proj)/bias$", ("layers", "heads")),
    (r"(^|/)layers/self_attn/o_proj/kernel$", ("layers", "heads", "embed")),
    (r"(^|/)layers/mlp/(gate_proj|up_proj)/kernel$", ("layers", "embed", "mlp")),
    (r"(^|/)layers/mlp/down_proj/kernel$", ("layers", "mlp", "embed")),
    (r"(^|/)layers/(input_layernorm|post_attention_layernorm)/scale$", ("layers", "norm")),
    (r"(^|/)norm/scale$", ("norm",)),
    # SigLIP vision tower
    (r"(^|/)patch_embedding/kernel$", (None, None, None, "vit_embed")),
    (r"(^|/)patch_embedding/bias$", ("vit_embed",)),
    (r"(^|/)position_embedding/embedding$", (None, "vit_embed")),
    (r"(^|/)layers/(q_proj|k_proj|v_proj)/kernel$", ("layers", "vit_embed", "heads")),
    (r"(^|/)layers/(q_proj|k_proj|v_proj)/bias$", ("layers", "heads")),
    (r"(^|/)layers/out_proj/kernel$", ("layers", "heads", "vit_embed")),
    (r"(^|/)layers/out_proj/bias$", ("layers", "norm")),
    (r"(^|/)layers/fc1/kernel$", ("layers", "vit_embed", "mlp")),
    (r"(^|/)layers/fc1/bias$", ("layers", "mlp")),
    (r"(^|/)layers/fc2/kernel$", ("layers", "mlp", "vit_embed")),
    (r"(^|/)layers/fc2/bias$", ("layers", "norm")),
    (r"(^|/)layers/layer_norm[12]/(scale|bias)$", ("layers", "norm")),
    (r"(^|/)post_layernorm/(scale|bias)$", ("norm",)),
    # LLaVA-OneVision glue
    (r"(^|/)multi_modal_projector/linear_1/kernel$", ("vit_embed", "mlp")),
    (r"(^|/)multi_modal_projector/linear_1/bias$", ("mlp",)),
    (r"(^|/)multi_modal_projector/linear_2/kernel$", ("mlp", "embed")),
    (r"(^|/)multi_modal_projector/linear_2/bias$", ("norm",)),
    (r"(^|/)image_newline$", ("norm",)),
)

LOGICAL_TO_MESH: dict[str, Any] = {
    "embed": "fsdp",
    "vit_embed": "fsdp",
    "vocab": "tensor",
    "heads": "tensor",
    "mlp": "tensor",
    "layers": None,
    "norm": None,
    "batch": BATCH_AXES,
}


def make_mesh(shape: Mapping[str, int] | Sequence[int] = (-1, 1, 1), devices=None) -> Mesh:
  """Mesh over `MESH_AXES`; sizes as a dict or a tuple, -1 fills the remaining devices.

  Without explicit `devices`, a mesh smaller than the host's device count uses the first devices
  (e.g. (1, 1, 1) runs on one device of many); explicit devices must match the shape exactly.
  """
  sizes = [shape.get(a, 1) for a in MESH_AXES] if isinstance(shape, Mapping) else list(shape)
  if len(sizes) != len(MESH_AXES):
    raise ValueError(f"Mesh shape {shape} must give a size for each of {MESH_AXES}.")
  if devices is None and -1 not in sizes and 0 < math.prod(sizes) < len(jax.devices()):
    devices = jax.devices()[:math.prod(sizes)]
  devices = list(devices if devices is not None else jax.devices())
  if sizes.count(-1) > 1:
    raise ValueError(f"Mesh shape {shape}: at most one axis may be -1.")
  if -1 in sizes:
    known = 1
    for s in sizes:
      known *= s if s != -1 else 1
    sizes[sizes.index(-1)] = len(devices) // known
  total = 1
  for s in sizes:
    total *= s
  if total != len(devices):
    raise ValueError(f"Mesh shape {dict(zip(MESH_AXES, sizes))} needs {total} devices; "
                     f"{len(devices)} are available.")
  # Auto axes: XLA propagates shardings through the model from the annotated inputs and outputs.
  return jax.make_mesh(tuple(sizes), MESH_AXES, devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def logical_axes(path: str, ndim: int, rules=PARAM_LOGICAL_AXES) -> tuple[str | None, ...]:
  """Logical axes of the parameter at `path`; raises if no rule matches or the rank differs."""
  for pattern, axes in rules:
    if re.search(pattern, path):
      if len(axes) != ndim:
        raise ValueError(f"Sharding rule {pattern!r} gives {len(axes)} axes for parameter {path!r} "
                         f"of rank {ndim}.")
      return axes
  raise ValueError(f"No sharding rule matches parameter {path!r}; add one to PARAM_LOGICAL_AXES.")


def spec_for(shape: Sequence[int], axes: Sequence[str | None], mesh: Mesh,
             logical_to_mesh: Mapping[str, Any] = LOGICAL_TO_MESH) -> P:
  """PartitionSpec for one array; dimensions that do not divide evenly stay replicated."""
  out, used = [], set()
  for size, name in zip(shape, axes):
    target = logical_to_mesh.get(name) if name else None
    names = (target,) if isinstance(target, str) else tuple(target or ())
    names = tuple(n for n in names if n not in used and mesh.shape.get(n, 1) > 1)
    parts = 1
    for n in names:
      parts *= mesh.shape[n]
    if not names or size % parts:
      out.append(None)
      continue
    used.update(names)
    out.append(names[0] if len(names) == 1 else names)
  return P(*out)


def param_shardings(abstract_params, mesh: Mesh, rules=PARAM_LOGICAL_AXES,
                    logical_to_mesh: Mapping[str, Any] = LOGICAL_TO_MESH):
  """NamedSharding for every leaf of a (possibly abstract) parameter pytree."""
  def one(path, leaf):
    axes = logical_axes(path_str(path), len(leaf.shape), rules)
    return NamedSharding(mesh, spec_for(leaf.shape, axes, mesh, logical_to_mesh))
  return jax.tree_util.tree_map_with_path(one, abstract_params)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Shards the leading (batch) dimension over `BATCH_AXES`, replicates the rest."""
  return NamedSharding(mesh, P(BATCH_AXES, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
