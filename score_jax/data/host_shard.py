"""Which rows of every global batch this process reads: a deterministic split of each source by JAX process.

Every process shuffles the same source with the same seed, and global batch i is items [i*B, (i+1)*B) of that
one stream whatever the number of processes. A process reads only the block of rows its own devices hold
along the mesh's batch axes (`models.sharding.BATCH_AXES`), i.e. every `count`-th local batch of the stream
(`pipeline.make_iterator(..., shard=(index, count))`). So processes read disjoint samples and their rows,
assembled by `distributed.global_batch`, are exactly the batch one process would read alone. One process
reads everything through the unchanged pipeline; processes that all hold the whole batch (a mesh whose batch
axes stay inside one process) each read the whole batch.
"""
from __future__ import annotations

import dataclasses
import math

from score_jax.models import sharding as shd


@dataclasses.dataclass(frozen=True)
class HostShard:
  index: int  # which block of every global batch this process reads
  count: int  # blocks per global batch
  rows: int   # rows per block: this process's batch size


def batch_parts(mesh) -> int:
  """Ways the batch dimension is split over the mesh (the product of its batch axes)."""
  return math.prod(mesh.shape.get(a, 1) for a in shd.BATCH_AXES)


def host_shard(mesh, global_batch: int, field: str = "config.batch_size") -> HostShard:
  """This process's block of a global batch of `global_batch` rows sharded over `mesh`'s batch axes.

  Raises ValueError naming `field` when the batch does not split over the mesh, and when this process's
  devices hold rows that are not one contiguous block of equal size (a device order no reader supports).
  """
  parts = batch_parts(mesh)
  if global_batch < 1 or global_batch % parts:
    good = parts * max(1, -(-global_batch // parts))
    raise ValueError(
        f"{field}={global_batch} must be a positive multiple of {parts}: the batch is split over the mesh's "
        f"batch axes {' x '.join(shd.BATCH_AXES)} = {' x '.join(str(mesh.shape.get(a, 1)) for a in shd.BATCH_AXES)} "
        f"(mesh {dict(mesh.shape)} on {mesh.devices.size} devices); e.g. --{field}={good}, or "
        "a config.model.mesh with a smaller data axis.")
  spans = {(s[0].start or 0, global_batch if s[0].stop is None else s[0].stop)
           for s in shd.batch_sharding(mesh, 1).addressable_devices_indices_map((global_batch,)).values()}
  lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
  rows = hi - lo
  if (sum(b - a for a, b in spans) != rows or len({b - a for a, b in spans}) != 1 or lo % rows
      or global_batch % rows):
    raise ValueError(f"This process's devices hold rows {sorted(spans)} of the {global_batch}-row batch of mesh "
                     f"{dict(mesh.shape)}: not one aligned block; order the mesh's devices by process.")
  return HostShard(index=lo // rows, count=global_batch // rows, rows=rows)
