"""CaCoVID's dynamic sample ratio and per-sample replay memory.

Each training sample is revisited several times. Before a visit, the mean reward of its remembered
token rollouts decides the sample rate r: >= 0.875 (too easy) halves it, not below min(0.01, r0);
<= 0.125 (too hard) doubles it, not above max(0.12, r0) (r0 = base rate; 0.5 before any rollout).
The rate is per sample: the authors' trainer (one sample per device) resets rate, memory and "accuracy" for
every new sample and moves the rate between that sample's consecutive visits (LivingFutureLab/CaCoVID @384752d,
src/r1-v/src/open_r1/trainer/grpo_trainer.py, the `while self.valid_iter < self.num_iter_for_item` loop). Here a
sample is a batch row, its visits are the visits of one training step, so the state is one rung per row
(`update_levels`), reset every step.

Static shapes: the number of tokens per frame k = round(r * P) is a compile-time constant, so r moves on a
fixed ladder of rates (`ratio_ladder`: r0 * 2^j inside [lo, hi] plus the clamps lo and hi themselves) one
rung at a time, and the jitted step compiles once per rung (5 rungs for r0 = 0.02: .01 .02 .04 .08 .12).
The one departure from the authors' code: from a clamp that is not a power-of-two multiple of r0 (0.12)
halving goes to the next rung (0.08) instead of 0.06.

Replay memory (`ReplayMemory`, a pytree of fixed-capacity ring buffers): keep masks over all N tokens (so
rollouts drawn at different rates share one shape), the rung each token rollout was drawn at (the exact OCSS
log-probability needs its k and l), rewards and validity, for token and frame rollouts;
plus the policy logits of the first visit, which CaCoVID's PPO uses as the "old" policy for every
remembered rollout. Pure functions (`init_memory`, `append_token`, `append_frame`, `set_old_logits`,
`mean_token_reward`) work inside or outside jit, with any leading batch shape.
Reference: CaCoVID (arXiv 2602.01649) training code.
"""
from __future__ import annotations

import math

import flax
import jax.numpy as jnp
import numpy as np

EASY, HARD = 0.875, 0.125


def ratio_ladder(base: float, lo: float | None = None, hi: float | None = None) -> tuple[float, ...]:
  """Sorted rates base * 2^j within [lo, hi], plus lo and hi (defaults min(0.01, base), max(0.12, base))."""
  if not 0.0 < base <= 1.0:
    raise ValueError(f"base rate {base} must be in (0, 1].")
  lo = min(0.01, base) if lo is None else lo
  hi = max(0.12, base) if hi is None else hi
  if not 0.0 < lo <= base <= hi:
    raise ValueError(f"need 0 < lo <= base <= hi; got lo={lo}, base={base}, hi={hi}.")
  rungs = {lo, hi, base}
  j_lo, j_hi = math.ceil(math.log2(lo / base) - 1e-9), math.floor(math.log2(hi / base) + 1e-9)
  rungs.update(base * 2.0 ** j for j in range(j_lo, j_hi + 1))
  return tuple(sorted(round(r, 12) for r in rungs if lo - 1e-12 <= r <= hi + 1e-12))


def update_level(level: int, mean_reward: float, n_levels: int, easy: float = EASY, hard: float = HARD) -> int:
  """One rung down (fewer tokens) if mean_reward >= easy, one up if <= hard, else stay; clamped."""
  if not 0 <= level < n_levels:
    raise ValueError(f"level={level} outside [0, {n_levels}).")
  if mean_reward >= easy:
    return max(level - 1, 0)
  if mean_reward <= hard:
    return min(level + 1, n_levels - 1)
  return level


def update_levels(levels: np.ndarray, mean_rewards: np.ndarray, n_levels: int, easy: float = EASY,
                  hard: float = HARD) -> np.ndarray:
  """`update_level` per sample (host side): levels int [B], mean rewards [B] -> new levels int32 [B]."""
  levels, mean_rewards = np.asarray(levels), np.asarray(mean_rewards, np.float64)
  if levels.shape != mean_rewards.shape:
    raise ValueError(f"levels {levels.shape} and mean rewards {mean_rewards.shape} must have one entry per sample.")
  if levels.size and not (levels.min() >= 0 and levels.max() < n_levels):
    raise ValueError(f"levels {levels.tolist()} outside [0, {n_levels}).")
  step = np.where(mean_rewards >= easy, -1, np.where(mean_rewards <= hard, 1, 0))
  return np.clip(levels + step, 0, n_levels - 1).astype(np.int32)


def level_of(ratio: float, ladder: tuple[float, ...]) -> int:
  """Index of `ratio` on `ladder` (a ValueError if it is not a rung)."""
  matches = [i for i, r in enumerate(ladder) if abs(r - ratio) <= 1e-9 * max(r, 1.0)]
  if not matches:
    raise ValueError(f"ratio={ratio} is not on the ladder {ladder}.")
  return matches[0]


def update_ratio(ratio: float, mean_reward: float, ladder: tuple[float, ...], easy: float = EASY,
                 hard: float = HARD) -> float:
  """`update_level` on rates: ratio must be a rung of `ladder`."""
  return ladder[update_level(level_of(ratio, ladder), mean_reward, len(ladder), easy, hard)]


@flax.struct.dataclass
class ReplayMemory:
  token_masks: jnp.ndarray    # bool [..., C_tok, N]
  token_rewards: jnp.ndarray  # f32 [..., C_tok]
  token_valid: jnp.ndarray    # bool [..., C_tok]
  token_levels: jnp.ndarray   # int32 [..., C_tok]: ladder rung each token rollout was drawn at
  frame_masks: jnp.ndarray    # bool [..., C_frame, T]
  frame_rewards: jnp.ndarray  # f32 [..., C_frame]
  frame_valid: jnp.ndarray    # bool [..., C_frame]
  frame_levels: jnp.ndarray   # int32 [..., C_frame]: rung of the sample when each frame rollout was drawn
  token_count: jnp.ndarray    # int32 [...]: token rollouts appended so far (ring position = count % C)
  frame_count: jnp.ndarray    # int32 [...]
  old_token_logits: jnp.ndarray  # f32 [..., N]: policy logits of the first visit
  old_frame_logits: jnp.ndarray  # f32 [..., T]
  has_old: jnp.ndarray        # bool [...]


def init_memory(token_capacity: int, frame_capacity: int, n_tokens: int, n_frames: int,
                batch_shape: tuple[int, ...] = ()) -> ReplayMemory:
  """Empty memory with the given capacities (e.g. visits * rollouts per visit)."""
  if token_capacity < 1 or frame_capacity < 1:
    raise ValueError("replay capacities must be >= 1.")
  z = lambda *s, dt=jnp.float32: jnp.zeros(batch_shape + s, dt)
  return ReplayMemory(
      token_masks=z(token_capacity, n_tokens, dt=bool), token_rewards=z(token_capacity),
      token_valid=z(token_capacity, dt=bool), token_levels=z(token_capacity, dt=jnp.int32),
      frame_masks=z(frame_capacity, n_frames, dt=bool), frame_rewards=z(frame_capacity),
      frame_valid=z(frame_capacity, dt=bool), frame_levels=z(frame_capacity, dt=jnp.int32),
      token_count=z(dt=jnp.int32), frame_count=z(dt=jnp.int32), old_token_logits=z(n_tokens),
      old_frame_logits=z(n_frames), has_old=z(dt=bool))


def _ring_write(masks, rewards, valid, count, new_masks, new_rewards, tags=None, new_tags=None):
  cap, g = masks.shape[-2], new_masks.shape[-2]
  if g > cap:
    raise ValueError(f"cannot append {g} rollouts to a memory of capacity {cap}.")
  pos = (count[..., None] + jnp.arange(g)) % cap  # [..., g]
  onehot = pos[..., :, None] == jnp.arange(cap)  # [..., g, cap]
  hit = jnp.any(onehot, axis=-2)  # [..., cap]
  src = jnp.argmax(onehot, axis=-2)  # which new rollout lands in each slot
  new_m = jnp.take_along_axis(new_masks, src[..., None], axis=-2)
  new_r = jnp.take_along_axis(new_rewards.astype(jnp.float32), src, axis=-1)
  masks = jnp.where(hit[..., None], new_m, masks)
  rewards = jnp.where(hit, new_r, rewards)
  valid = valid | hit
  if tags is not None:
    tags = jnp.where(hit, jnp.take_along_axis(jnp.broadcast_to(new_tags, new_rewards.shape), src, axis=-1), tags)
  return masks, rewards, valid, count + g, tags


def append_token(mem: ReplayMemory, masks: jnp.ndarray, rewards: jnp.ndarray,
                 levels: jnp.ndarray | int = 0) -> ReplayMemory:
  """Append token rollouts (masks bool [..., G, N], rewards [..., G], rung int or int [...] / [..., G]);
  the oldest are overwritten when full."""
  levels = _per_rollout(levels, rewards)
  m, r, v, c, lv = _ring_write(mem.token_masks, mem.token_rewards, mem.token_valid, mem.token_count, masks, rewards,
                               mem.token_levels, levels)
  return mem.replace(token_masks=m, token_rewards=r, token_valid=v, token_count=c, token_levels=lv)


def append_frame(mem: ReplayMemory, masks: jnp.ndarray, rewards: jnp.ndarray,
                 levels: jnp.ndarray | int = 0) -> ReplayMemory:
  """Append frame rollouts (frame keep masks bool [..., G, T], rewards [..., G], rung as `append_token`)."""
  m, r, v, c, lv = _ring_write(mem.frame_masks, mem.frame_rewards, mem.frame_valid, mem.frame_count, masks, rewards,
                               mem.frame_levels, _per_rollout(levels, rewards))
  return mem.replace(frame_masks=m, frame_rewards=r, frame_valid=v, frame_count=c, frame_levels=lv)


def _per_rollout(levels, rewards: jnp.ndarray) -> jnp.ndarray:
  """A rung (int, [...] or [..., G]) as int32 broadcastable to rewards [..., G]."""
  levels = jnp.asarray(levels, jnp.int32)
  return levels[..., None] if levels.ndim == rewards.ndim - 1 else levels


def set_old_logits(mem: ReplayMemory, token_logits: jnp.ndarray, frame_logits: jnp.ndarray) -> ReplayMemory:
  """Record the policy logits of the first visit; later visits keep the recorded ones."""
  keep = mem.has_old
  return mem.replace(
      old_token_logits=jnp.where(keep[..., None], mem.old_token_logits, token_logits.astype(jnp.float32)),
      old_frame_logits=jnp.where(keep[..., None], mem.old_frame_logits, frame_logits.astype(jnp.float32)),
      has_old=jnp.ones_like(keep))


def mean_token_reward(mem: ReplayMemory, empty: float = 0.5) -> jnp.ndarray:
  """Mean reward of the remembered token rollouts ([...]); `empty` (0.5: no rate change) before any."""
  n = jnp.sum(mem.token_valid, axis=-1)
  total = jnp.sum(jnp.where(mem.token_valid, mem.token_rewards, 0.0), axis=-1)
  return jnp.where(n > 0, total / jnp.maximum(n, 1), empty)
