"""OCSS (CaCoVID token-mode sampler), frame-mode and content rollouts."""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_jax.rl import ocss

FRAME_SAMPLE = jax.jit(ocss.ocss_frame_sample, static_argnums=(2, 3))
FRAME_LOGPROB = jax.jit(ocss.ocss_frame_logprob, static_argnums=(2,))
GROUP = jax.jit(ocss.ocss_group_sample, static_argnums=(2, 3, 4))
LOGPROB = jax.jit(ocss.ocss_logprob, static_argnums=(2,))


def test_subspace_count_and_sizes():
  assert ocss.num_subspaces(0.02, 2.0) == 25  # CaCoVID default: 25 sub-spaces of ~8 of 196 tokens
  assert ocss.num_subspaces(0.6, 2.0) == 1
  sizes = np.bincount(ocss.subspace_of_rank(196, 25))
  assert len(sizes) == 25 and sizes.sum() == 196 and set(sizes) == {7, 8} and sizes[0] == 8
  assert ocss.subspace_cap(25) == pytest.approx(0.1) and ocss.subspace_cap(2) == 0.9
  assert ocss.subspace_cap(1) == 1.0
  assert ocss.tokens_per_frame(0.02, 196) == 4
  with pytest.raises(ValueError):
    ocss.num_subspaces(0.0)


def test_cap_probabilities_caps_and_sums():
  rng = np.random.default_rng(0)
  p = jax.nn.softmax(jnp.asarray(rng.normal(size=(5, 10)) * 3, jnp.float32), axis=-1)
  capped = jax.jit(ocss.cap_probabilities, static_argnums=1)(p, 0.2)
  np.testing.assert_allclose(capped.sum(-1), 1.0, rtol=1e-5)
  assert float(capped.max()) <= 0.2 + 1e-6
  # uncapped entries keep their ratios (water-filling), capped ones sit at the cap
  for row_p, row_c in zip(np.asarray(p), np.asarray(capped)):
    free = row_c < 0.2 - 1e-6
    p_floor = np.maximum(row_p, 1 / 100)
    np.testing.assert_allclose(row_c[free] / row_c[free].sum(), p_floor[free] / p_floor[free].sum(), rtol=1e-4)
  # a hand case: [0.6, 0.25, 0.15] capped at 0.5 -> [0.5, 0.5 * 0.25/0.4, 0.5 * 0.15/0.4]
  np.testing.assert_allclose(ocss.cap_probabilities(jnp.array([0.6, 0.25, 0.15]), 0.5), [0.5, 0.3125, 0.1875],
                             rtol=1e-5)
  # entries are floored at 1/n^2 first (CaCoVID): [0.9, 0.1 -> 0.25 after flooring], renormalised
  np.testing.assert_allclose(ocss.cap_probabilities(jnp.array([0.9, 0.1]), 0.9), [0.9 / 1.15, 0.25 / 1.15],
                             rtol=1e-5)
  with pytest.raises(ValueError):
    ocss.cap_probabilities(jnp.ones((4,)) / 4, 0.2)  # 4 * 0.2 < 1


def _enumerate(logits, k, l):
  """All ordered draws of one frame with their OCSS probabilities."""
  p = logits.shape[-1]
  orders = np.array(list(itertools.permutations(range(p), k)), np.int32)
  lp = FRAME_LOGPROB(jnp.broadcast_to(logits, (len(orders), p)), jnp.asarray(orders), l)
  return orders, np.exp(np.asarray(lp, np.float64))


def test_logprob_matches_enumeration_and_empirical_frequencies():
  logits = jnp.array([2.0, 1.0, 0.5, 0.0, -1.0, 0.3], jnp.float32)
  k, l = 2, 2  # 6 tokens, two sub-spaces of 3 ({0, 1, 2} and {3, 4, 5} by sorted rank)
  orders, probs = _enumerate(logits, k, l)
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-5)
  order_desc = np.argsort(-np.asarray(logits), kind="stable")
  top, bottom = set(order_desc[:3]), set(order_desc[3:])
  straddle = [not (set(o) <= top or set(o) <= bottom) for o in orders]
  assert np.all(probs[straddle] == 0.0)  # a draw never leaves its sub-space
  # sub-space masses ~0.81 / 0.19 are within the 0.9 cap; the 1/l^2 = 0.25 floor lifts the small one
  mass_top = float(jax.nn.softmax(logits)[jnp.asarray(sorted(top))].sum())
  in_top = np.array([set(o) <= top for o in orders])
  np.testing.assert_allclose(probs[in_top].sum(), mass_top / (mass_top + 0.25), rtol=1e-5)

  draws = 20000
  samples = np.asarray(FRAME_SAMPLE(jax.random.key(0), jnp.broadcast_to(logits, (draws, 6)), k, l))
  index = {tuple(o): i for i, o in enumerate(orders)}
  freq = np.bincount([index[tuple(s)] for s in samples], minlength=len(orders)) / draws
  np.testing.assert_allclose(freq, probs, atol=0.012)


def test_within_clip_flattens_inside_subspace():
  logits = jnp.array([5.0, 0.0, -5.0, -6.0], jnp.float32)  # l = 1: one sub-space of 4, s = 4
  orders, probs = _enumerate(logits, 1, 1)
  # raw softmax would put ~0.99 on token 0; the clamp keeps every token in [1/8, 1/2] before renormalising
  np.testing.assert_allclose(probs, np.array([0.5, 0.125, 0.125, 0.125]) / 0.875, rtol=1e-5)


def test_group_sample_first_topk_static_and_logprob():
  rng = np.random.default_rng(1)
  b, t, p, k, g, l = 2, 3, 8, 2, 5, 2
  logits = jnp.asarray(rng.normal(size=(b, t, p)) * 2, jnp.float32)
  s = GROUP(jax.random.key(3), logits, k, g, l)
  assert s.indices.shape == (b, g, t * k) and s.mask.shape == (b, g, t * p)
  assert np.all(np.diff(np.asarray(s.indices), axis=-1) > 0)  # ascending, unique
  assert np.all(np.asarray(s.mask).sum(-1) == t * k)
  per_frame = np.asarray(s.mask).reshape(b, g, t, p).sum(-1)
  assert np.all(per_frame == k)  # exactly k tokens in every frame
  top = np.sort(np.argsort(-np.asarray(logits), axis=-1)[..., :k], axis=-1) + np.arange(t)[:, None] * p
  np.testing.assert_array_equal(np.asarray(s.indices[:, 0]), top.reshape(b, t * k))
  lp = np.asarray(LOGPROB(logits, s, l))
  assert lp.shape == (b, g) and np.all(np.isfinite(lp)) and np.all(lp < 0)
  # other logits can make a draw impossible (it straddles two sub-spaces): -inf, not NaN
  flipped = np.asarray(LOGPROB(-logits, s, l))
  assert not np.any(np.isnan(flipped))


def test_content_and_frame_mode():
  rng = np.random.default_rng(2)
  b, t, p, d = 2, 4, 8, 6
  visual = jnp.asarray(rng.normal(size=(b, t, p, d)), jnp.float32)
  c = jax.jit(ocss.content_sample, static_argnums=1)(visual, 2)
  assert c.indices.shape == (b, 1, t * 2)
  assert np.all(np.asarray(c.mask).reshape(b, t, p).sum(-1) == 2)
  frame_logits = jnp.array([[5.0, 0.0, 0.0, -5.0], [0.0, 0.0, 3.0, 0.0]], jnp.float32)
  fn = jax.jit(ocss.frame_mode_sample, static_argnums=(3, 4, 5))
  s, fmask = fn(jax.random.key(0), frame_logits, visual, 6, 2, 50)
  assert s.indices.shape == (b, 50, 6) and fmask.shape == (b, 50, t)
  assert np.all(np.asarray(fmask).sum(-1) == 2)
  np.testing.assert_array_equal(np.asarray(fmask[0, 0]), [True, True, False, False])  # first: top frames
  tok_frames = np.asarray(s.indices) // p
  assert np.all(np.take_along_axis(np.asarray(fmask), tok_frames, axis=-1))  # tokens only in chosen frames
  assert np.all(np.diff(np.asarray(s.indices), axis=-1) > 0)
  # sample 0's frame 0 (softmax ~0.99, capped at 3/t = 0.75) is kept by most rollouts
  assert np.asarray(fmask[0, 1:, 0]).mean() > 0.7


# ---- exact log-probability of the combination (the keep mask), against brute-force enumeration in numpy ----

def _np_cap(p, cap):
  """Cap-and-renormalise written from its definition: floor 1/n^2, normalise, then repeatedly pin entries
  above the cap and spread the rest of the mass over the others in proportion."""
  n = len(p)
  p = np.maximum(p, 1 / n ** 2)
  p = p / p.sum()
  pinned = np.zeros(n, bool)
  while True:
    out = np.where(pinned, cap, p * (1 - cap * pinned.sum()) / p[~pinned].sum())
    if not np.any(out[~pinned] > cap):
      return np.where(pinned, cap, out)
    pinned |= out > cap


def _np_ocss_sets(logits, k, l, max_group_prob=2.0, within_clip=2.0):
  """{frozenset of tokens: probability} of one frame's OCSS draw, by enumerating every (sub-space, order)."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max())
  p /= p.sum()
  n = len(p)
  groups = np.array_split(np.argsort(-logits, kind="stable"), l)
  mass = np.array([p[g].sum() for g in groups])
  cap = max(min(max_group_prob / l, 0.9), 0.1) if l > 1 else 1.0
  gp = _np_cap(mass, min(cap, 0.999)) if l > 1 else np.ones(1)
  s = n // l
  out = {}
  for g, members in enumerate(groups):
    w = p[members] / mass[g]
    if within_clip is not None:
      w = np.clip(w, 1 / (within_clip * s), within_clip / s)
    w = dict(zip(members.tolist(), w))
    for order in itertools.permutations(members.tolist(), k):
      prob, left = gp[g], sum(w.values())
      for i in order:
        prob *= w[i] / left
        left -= w[i]
      out[frozenset(order)] = out.get(frozenset(order), 0.0) + prob
  return out


def _np_joint(frames_logits, k, l, **kw):
  """Every joint outcome of T independent frames: {tuple of per-frame sets: probability}."""
  per_frame = [_np_ocss_sets(f, k, l, **kw) for f in frames_logits]
  joint = {}
  for combo in itertools.product(*[list(d.items()) for d in per_frame]):
    joint[tuple(s for s, _ in combo)] = float(np.prod([q for _, q in combo]))
  return joint


def _mask_of(sets, p):
  m = np.zeros(len(sets) * p, bool)
  for t, s in enumerate(sets):
    m[[t * p + i for i in s]] = True
  return m


SET_LOGPROB = jax.jit(ocss.ocss_set_logprob, static_argnums=(2, 3, 4, 5, 6))


@pytest.mark.parametrize("within_clip", [2.0, None])
def test_set_logprob_ratio_equals_brute_force(within_clip):
  # T = 2 frames of P = 6 tokens, k = 2 per frame in l = 2 sub-spaces of 3: 12 x 12 joint (sub-space, order) outcomes
  old = np.array([[2.0, 1.0, 0.5, 0.0, -1.0, 0.3], [0.2, -0.4, 1.5, 0.9, -2.0, 0.0]])
  new = old + np.array([[0.3, -0.2, 0.4, 0.1, 0.0, -0.1], [-0.2, 0.1, 0.0, 0.3, 0.2, -0.3]])  # same sort order
  k, l, p = 2, 2, 6
  bf_old, bf_new = _np_joint(old, k, l, within_clip=within_clip), _np_joint(new, k, l, within_clip=within_clip)
  assert sum(bf_old.values()) == pytest.approx(1.0)
  outcomes = sorted(bf_old, key=lambda o: [sorted(s) for s in o])
  masks = jnp.asarray(np.stack([_mask_of(o, p) for o in outcomes]))[None]  # [1, C, 12]
  lp_old = np.asarray(SET_LOGPROB(jnp.asarray(old, jnp.float32)[None], masks, k, l, 2.0, within_clip))[0]
  lp_new = np.asarray(SET_LOGPROB(jnp.asarray(new, jnp.float32)[None], masks, k, l, 2.0, within_clip))[0]
  want_old = np.array([bf_old[o] for o in outcomes])
  np.testing.assert_allclose(np.exp(lp_old), want_old, rtol=2e-5)
  ratio_bf = np.array([bf_new[o] / bf_old[o] for o in outcomes])
  np.testing.assert_allclose(np.exp(lp_new - lp_old), ratio_bf, rtol=2e-5)
  assert ratio_bf.min() < 0.8 and ratio_bf.max() > 1.2  # the case moves the ratio both ways

  # logits that change the sort: draws the new partition cannot produce get -inf (ratio 0), as brute force says
  shuffled = old[:, ::-1].copy()
  bf_shuf = _np_joint(shuffled, k, l, within_clip=within_clip)
  lp_shuf = np.asarray(SET_LOGPROB(jnp.asarray(shuffled, jnp.float32)[None], masks, k, l, 2.0, within_clip))[0]
  want = np.array([bf_shuf.get(o, 0.0) for o in outcomes])
  assert np.any(want == 0) and np.any(want > 0)
  np.testing.assert_allclose(np.exp(lp_shuf), want, rtol=2e-5, atol=0)


def test_set_logprob_sums_orders_of_the_ordered_logprob():
  # the combination's probability is the sum of the ordered draw's over its k! orders (ocss_frame_logprob)
  logits = jnp.array([1.0, -0.5, 0.2, 2.0, 0.0, -1.0, 0.7, 0.1], jnp.float32)
  k, l = 3, 2
  orders, probs = _enumerate(logits, k, l)
  by_set = {}
  for o, q in zip(orders, probs):
    by_set[frozenset(o.tolist())] = by_set.get(frozenset(o.tolist()), 0.0) + q
  sets = [sorted(s) for s in by_set]
  lp = jax.jit(ocss.ocss_frame_set_logprob, static_argnums=(2,))(
      jnp.broadcast_to(logits, (len(sets), 8)), jnp.asarray(sets, jnp.int32), l)
  np.testing.assert_allclose(np.exp(np.asarray(lp)), [by_set[frozenset(s)] for s in sets], rtol=2e-5)


def test_frame_set_logprob_matches_brute_force():
  t, n_f = 5, 2
  logits = np.array([[3.0, 0.0, -1.0, 0.5, 1.0]])
  p = np.exp(logits[0] - logits[0].max())
  w = _np_cap(p / p.sum(), 3.0 / t)
  masks, want = [], []
  for pair in itertools.combinations(range(t), n_f):
    total = 0.0
    for a, b in itertools.permutations(pair):
      total += w[a] * w[b] / (1.0 - w[a])
    masks.append(np.isin(np.arange(t), pair))
    want.append(total)
  lp = jax.jit(ocss.frame_set_logprob, static_argnums=2)(jnp.asarray(logits, jnp.float32),
                                                         jnp.asarray(np.stack(masks))[None], n_f)
  np.testing.assert_allclose(np.exp(np.asarray(lp[0])), want, rtol=2e-5)
  assert sum(want) == pytest.approx(1.0)


def test_by_level_sampler_and_logprob():
  # two samples at different rungs: row 0 draws 1 token per frame from 3 sub-spaces, row 1 2 tokens from 2
  shapes = ((1, 3), (2, 2))
  b, t, p, g = 2, 2, 6, 3000
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(b, t, p)), jnp.float32)
  levels = jnp.array([0, 1])
  s = jax.jit(ocss.ocss_group_sample_by_level, static_argnums=(3, 4))(jax.random.key(0), logits, levels, shapes, g)
  assert s.indices.shape == (b, g, t * 2)
  per_frame = np.asarray(s.mask).reshape(b, g, t, p).sum(-1)
  assert np.all(per_frame[0] == 1) and np.all(per_frame[1] == 2)
  np.testing.assert_array_equal(np.asarray(s.valid).sum(-1), [[t] * g, [2 * t] * g])
  idx, val, mask = map(np.asarray, (s.indices, s.valid, s.mask))
  assert np.all(np.take_along_axis(mask, idx, -1)[val])  # valid indices are the mask's, padding is invalid
  lv = jnp.broadcast_to(levels[:, None], (b, g))
  lp = np.asarray(jax.jit(ocss.ocss_set_logprob_by_level, static_argnums=(3,))(logits, s.mask, lv, shapes))
  assert np.all(np.isfinite(lp))
  bits = 2 ** np.arange(t * p)
  for row, (k, l) in enumerate(shapes):  # exp(logprob) is the brute-force probability, and the sampler's frequency
    joint = {int(_mask_of(o, p) @ bits): q for o, q in _np_joint(np.asarray(logits[row], np.float64), k, l).items()}
    codes = mask[row].astype(np.int64) @ bits
    np.testing.assert_allclose(np.exp(lp[row]), [joint[c] for c in codes], rtol=5e-5)
    for code, prob in sorted(joint.items(), key=lambda kv: -kv[1])[:3]:
      assert np.mean(codes[1:] == code) == pytest.approx(prob, abs=0.03)


def _np_video_joint(frames_logits, k, l, max_group_prob=2.0, within_clip=2.0):
  """Every joint outcome of per-video OCSS: one rank block g for all frames, drawn from the capped mean of
  the frames' block masses, then each frame's k tokens inside its own block g: {per-frame sets: probability}."""
  masses, per_block = [], []
  for f in frames_logits:
    p = np.exp(f - f.max())
    p /= p.sum()
    groups = np.array_split(np.argsort(-f, kind="stable"), l)
    masses.append([p[g].sum() for g in groups])
    # P(S | g) of this frame: its OCSS sets with the sub-space forced to g (gp = one-hot)
    per_block.append([{s_: q / _np_ocss_block_prob(f, l, g, max_group_prob, within_clip)
                       for s_, q in _np_ocss_sets(f, k, l, max_group_prob, within_clip).items()
                       if set(s_) <= set(groups[g].tolist())} for g in range(l)])
  cap = max(min(max_group_prob / l, 0.9), 0.1)
  q = _np_cap(np.mean(masses, axis=0), min(cap, 0.999))
  joint = {}
  for g in range(l):
    for combo in itertools.product(*[list(pb[g].items()) for pb in per_block]):
      joint[tuple(s_ for s_, _ in combo)] = q[g] * float(np.prod([x for _, x in combo]))
  return joint


def _np_ocss_block_prob(f, l, g, max_group_prob, within_clip):
  """The per-frame sub-space probability gp[g] that `_np_ocss_sets` multiplies in."""
  p = np.exp(f - f.max())
  p /= p.sum()
  groups = np.array_split(np.argsort(-f, kind="stable"), l)
  cap = max(min(max_group_prob / l, 0.9), 0.1)
  return _np_cap(np.array([p[x].sum() for x in groups]), min(cap, 0.999))[g]


def test_per_video_rank_blocks_logprob_and_frequencies():
  # T = 3 frames of P = 6 tokens, k = 2 in l = 3 blocks of 2: a block pair is the whole draw, one g per video
  k, l, p = 2, 3, 6
  logits = np.array([[2.0, 1.0, 0.5, 0.0, -1.0, 0.3], [0.2, -0.4, 1.5, 0.9, -2.0, 0.0],
                     [1.0, 1.2, -0.3, 0.4, 0.8, -1.5]])
  want = _np_video_joint(logits, k, l, max_group_prob=4.0)
  assert len(want) == l and sum(want.values()) == pytest.approx(1.0)  # one outcome per block
  sample = jax.jit(ocss.ocss_group_sample, static_argnums=(2, 3, 4, 5, 6, 7, 8))(
      jax.random.key(1), jnp.asarray(logits, jnp.float32)[None], k, 4000, l, 4.0, 2.0, True, "video")
  mask = np.asarray(sample.mask[0]).reshape(-1, 3, p)
  blocks = [tuple(frozenset(np.flatnonzero(m).tolist()) for m in row) for row in mask]
  assert blocks[0] == tuple(frozenset(np.argsort(-f, kind="stable")[:k].tolist()) for f in logits)  # top-k first
  for outcome, prob in want.items():  # every frame draws from the same-ranked block; frequencies as computed
    assert np.mean([b == outcome for b in blocks[1:]]) == pytest.approx(prob, abs=0.03)
  lp = np.asarray(SET_LOGPROB(jnp.asarray(logits, jnp.float32)[None], sample.mask, k, l, 4.0, 2.0, "video"))[0]
  np.testing.assert_allclose(np.exp(lp), [want[b] for b in blocks], rtol=2e-5)
  # a mask mixing rank blocks across frames is impossible per video, possible per frame
  mixed = jnp.asarray(_mask_of((frozenset({0, 1}), frozenset({2, 3}), frozenset({4, 3})), p))[None, None]
  assert np.isneginf(np.asarray(SET_LOGPROB(jnp.asarray(logits, jnp.float32)[None], mixed, k, l, 4.0, 2.0, "video")))
  assert np.isfinite(np.asarray(SET_LOGPROB(jnp.asarray(logits, jnp.float32)[None], mixed, k, l, 4.0, 2.0, "frame")))


def test_per_video_rank_blocks_ratio_equals_brute_force():
  # T = 2 frames of P = 6, k = 2 in l = 2 blocks of 3: within-block draws too, so both factors of the ratio act
  k, l, p = 2, 2, 6
  old = np.array([[2.0, 1.0, 0.5, 0.0, -1.0, 0.3], [0.2, -0.4, 1.5, 0.9, -2.0, 0.0]])
  new = old + np.array([[0.3, -0.2, 0.4, 0.1, 0.0, -0.1], [-0.2, 0.1, 0.0, 0.3, 0.2, -0.3]])
  bf_old, bf_new = _np_video_joint(old, k, l), _np_video_joint(new, k, l)
  assert sum(bf_old.values()) == pytest.approx(1.0)
  outcomes = sorted(bf_old, key=lambda o: [sorted(s_) for s_ in o])
  masks = jnp.asarray(np.stack([_mask_of(o, p) for o in outcomes]))[None]
  lp_old = np.asarray(SET_LOGPROB(jnp.asarray(old, jnp.float32)[None], masks, k, l, 2.0, 2.0, "video"))[0]
  lp_new = np.asarray(SET_LOGPROB(jnp.asarray(new, jnp.float32)[None], masks, k, l, 2.0, 2.0, "video"))[0]
  np.testing.assert_allclose(np.exp(lp_old), [bf_old[o] for o in outcomes], rtol=2e-5)
  np.testing.assert_allclose(np.exp(lp_new - lp_old), [bf_new[o] / bf_old[o] for o in outcomes], rtol=2e-5)
  # "mixed": the even mixture of the per-frame and the per-video probability of the same masks
  per_frame = _np_joint(old, k, l)
  lp_mixed = np.asarray(SET_LOGPROB(jnp.asarray(old, jnp.float32)[None], masks, k, l, 2.0, 2.0, "mixed"))[0]
  np.testing.assert_allclose(np.exp(lp_mixed), [(per_frame[o] + bf_old[o]) / 2 for o in outcomes], rtol=2e-5)


def test_mixed_draw_takes_half_the_group_per_video():
  # 2 frames whose orders disagree: the per-video half keeps one rank block in both frames, the per-frame half
  # mixes blocks in some rollouts
  k, l, p, g = 1, 3, 3, 400
  logits = jnp.asarray([[[3.0, 0.0, -3.0], [-3.0, 0.0, 3.0]]], jnp.float32)  # ranks reversed in frame 2
  s = jax.jit(ocss.ocss_group_sample, static_argnums=(2, 3, 4, 5, 6, 7, 8))(
      jax.random.key(0), logits, k, g, l, 3.0, None, False, "mixed")
  kept = np.asarray(s.mask[0]).reshape(g, 2, p).argmax(-1)  # [G, 2] local token per frame
  same_rank = kept[:, 0] == 2 - kept[:, 1]
  assert np.all(same_rank[g // 2:]) and not np.all(same_rank[:g // 2])
  with pytest.raises(ValueError, match="draw="):
    ocss.ocss_group_sample(jax.random.key(0), logits, k, g, l, draw="clip")


def test_exact_set_logprob_bounds_k():
  with pytest.raises(ValueError, match="k <= "):
    ocss.set_logprob_without_replacement(jnp.zeros((20,)), jnp.arange(ocss.MAX_EXACT_K + 1))
  assert ocss.ocss_shape(0.01, 16) == (1, 16)  # 50 sub-spaces clamped to P // k = 16
  assert ocss.ocss_shape(0.125, 16) == (2, 4)


@pytest.mark.parametrize("within_clip", [2.0, None])
def test_set_logprob_gradient_is_finite_when_a_subspace_mass_underflows(within_clip):
  # logits 150 nats apart: the lower sub-space's mass is ~1e-66 (0 in float32); the log-probability of a draw
  # there, and of one that straddles sub-spaces (-inf), must still have finite gradients (they were NaN: the
  # within-group weight p / mass had an infinite derivative)
  logits = jnp.asarray([[0.0, -1.0, -2.0, -150.0, -151.0, -152.0]], jnp.float32)[None]  # [1, T=1, P=6]
  masks = jnp.asarray([[[1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0], [1, 0, 0, 1, 0, 0]]], bool)  # top, low, straddling
  lp = lambda x: SET_LOGPROB(x, masks, 2, 2, 2.0, within_clip)
  values = np.asarray(lp(logits))[0]
  assert np.isfinite(values[:2]).all() and values[2] == -np.inf
  for c in range(3):
    grad = jax.grad(lambda x: jnp.clip(lp(x)[0, c], -20.0, 20.0))(logits)
    assert np.isfinite(np.asarray(grad)).all(), (c, grad)
