"""score_jax.viz: exact overlays, kept tokens per frame, accuracy curves from multi-seed eval.json files."""
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from score_jax import multi_seed  # noqa: E402
from score_jax.testing.smoke import REPO  # noqa: E402
from score_jax.viz import budget, curves, files, overlay  # noqa: E402


def _frames(t=3, size=8, seed=0):
  return np.random.default_rng(seed).integers(40, 256, (t, size, size, 3), np.uint8)


def test_overlay_keeps_kept_cells_dims_dropped_ones_and_outlines_merged():
  frames = _frames()
  kept = np.zeros((3, 4), bool)
  kept[0, [0, 3]] = True
  kept[2, 1] = True
  merged = np.zeros_like(kept)
  merged[2, 1] = True
  scale, pad = 2, 3
  img = overlay.overlay_image(frames, kept, merged, scale=scale, cols=2, pad=pad)
  (h, w), origins = overlay.frame_origins(3, (8, 8), scale, cols=2, pad=pad)
  assert img.shape == (h, w, 3) and (h, w) == (pad + 2 * (16 + pad), pad + 2 * (16 + pad))
  assert origins == [(3, 3), (3, 22), (22, 3)]
  for f, (oy, ox) in enumerate(origins):
    for c in range(4):
      y, x = oy + (c // 2) * 8, ox + (c % 2) * 8
      got = img[y:y + 8, x:x + 8].astype(int)
      src = np.repeat(np.repeat(frames[f, (c // 2) * 4:(c // 2) * 4 + 4, (c % 2) * 4:(c % 2) * 4 + 4], 2, 0), 2, 1)
      if merged[f, c]:
        assert (got[0] == overlay.MERGED_COLOR).all() and (got[:, -1] == overlay.MERGED_COLOR).all()
        np.testing.assert_array_equal(got[2:-2, 2:-2], src[2:-2, 2:-2])
      elif kept[f, c]:
        np.testing.assert_array_equal(got, src)
      else:
        assert (got <= src).all() and got.mean() < 0.35 * src.mean()
  assert (img[:pad] == overlay.BACKGROUND).all()
  assert (img[22:, 22:] == overlay.BACKGROUND).all()  # the empty 4th slot of the 2x2 layout


def test_cells_cover_frames_with_non_divisible_grids():
  cells = overlay.cell_bounds((384, 384), (14, 14))
  assert len(cells) == 196 and cells[0][:2] == (0, 27) and cells[-1][1] == 384 and cells[-1][3] == 384
  area = sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in cells)
  assert area == 384 * 384


def test_keep_mask_from_indices_and_validity():
  mask = overlay.keep_mask(np.array([[0, 5, 2], [1, 1, 7]]), 8, valid=np.array([[1, 1, 0], [1, 1, 1]], bool))
  assert mask.tolist() == [[True, False, False, False, False, True, False, False],
                           [False, True, False, False, False, False, False, True]]
  with pytest.raises(ValueError, match=r"\[0, 8\)"):
    overlay.keep_mask(np.array([8]), 8)


def test_masks_from_a_compressor_that_merges():
  from types import SimpleNamespace
  visual = np.random.default_rng(0).normal(size=(1, 2, 4, 3)).astype(np.float32)
  flat = visual.reshape(1, 8, 3)
  tokens = flat[:, [1, 4, 6]].copy()
  tokens[0, 1] = (flat[0, 4] + flat[0, 5]) / 2  # slot 1 stands at token 4 and holds the mean of 4 and 5
  out = SimpleNamespace(tokens=tokens, positions=np.array([[1, 4, 6]]), valid=np.array([[True, True, False]]), span=8)
  kept, merged = overlay.masks_from_compressed(out, visual)
  assert np.flatnonzero(kept).tolist() == [1, 4] and np.flatnonzero(merged).tolist() == [4]
  with pytest.raises(ValueError, match="new video of 2 tokens"):
    overlay.masks_from_compressed(SimpleNamespace(tokens=tokens[:, :2], positions=np.array([[0, 1]]),
                                                  valid=np.ones((1, 2), bool), span=2), visual)


def test_bad_overlay_inputs_name_the_problem():
  with pytest.raises(ValueError, match="uint8 frames"):
    overlay.overlay_image(np.zeros((2, 8, 8, 3), np.float32), np.ones((2, 4), bool))
  with pytest.raises(ValueError, match="square grid"):
    overlay.overlay_image(_frames(2), np.ones((2, 6), bool))
  with pytest.raises(ValueError, match="split evenly over 3 frames"):
    overlay.overlay_image(_frames(3), np.ones(10, bool))


def test_png_round_trip_is_exact_and_never_overwrites(tmp_path):
  img = overlay.overlay_image(_frames(), np.random.default_rng(1).random((3, 4)) < 0.5, scale=3)
  path = files.save_png(str(tmp_path / "o.png"), img)
  np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), img)
  with pytest.raises(FileExistsError, match="nothing was overwritten"):
    files.save_png(path, img)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    files.save_png(str(tmp_path / "no" / "o.png"), img)


def test_overlay_and_budget_figures_draw_one_panel_per_frame():
  kept = np.zeros((3, 4), bool)
  kept[1] = True
  kept[2, :2] = True
  fig = overlay.overlay_figure(_frames(), kept, cols=2, title="t")
  titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
  assert titles == ["frame 0: 0/4", "frame 1: 4/4", "frame 2: 2/4"]
  assert budget.kept_per_frame(kept).tolist() == [0, 4, 2]
  fig = budget.kept_per_frame_figure({"score": kept, "uniform": np.ones((3, 4), bool)}, 4)
  heights = [p.get_height() for p in fig.axes[0].patches]
  assert heights == [0, 4, 2, 4, 4, 4]
  with pytest.raises(ValueError, match="same number of frames"):
    budget.kept_per_frame_figure({"a": kept, "b": np.ones((2, 4), bool)})


def _write_runs(root, accs):
  """seed_<i>/eval.json as train writes it (results_to_json layout) with the given score@0.1 accuracies."""
  for i, acc in enumerate(accs):
    os.makedirs(root / f"seed_{i}")
    clean = {"full@1.0": 0.9 + 0.01 * i, "score@0.1": acc, "score@0.25": acc + 0.05, "random@0.1": 0.5,
             "score (adaptive)@adaptive": acc - 0.1, "latency_s": {"score": 0.01}, "samples": 64,
             "retention": {"score (adaptive)": {"mean": 0.12 + 0.02 * i, "std": 0.01}}}
    (root / f"seed_{i}" / "eval.json").write_text(json.dumps({"clean": clean, "h264": clean}))


def test_curve_has_mean_and_std_over_seeds(tmp_path):
  _write_runs(tmp_path, [0.6, 0.7, 0.8])
  runs = curves.load_runs(str(tmp_path))
  assert len(runs) == 3
  points = curves.curve_points(multi_seed.aggregate(runs)["clean"])
  assert points["score"][0.1] == pytest.approx((0.7, np.std([0.6, 0.7, 0.8]), 3))
  fig = curves.accuracy_curve_figure(runs, "clean")
  ax = fig.axes[0]
  labels = ax.get_legend_handles_labels()[1]
  assert sorted(labels) == ["all tokens", "random", "score", "score (adaptive)"]
  score_line = ax.containers[0].lines[0]
  np.testing.assert_allclose(np.asarray(score_line.get_xdata(), float), [10, 25])
  np.testing.assert_allclose(np.asarray(score_line.get_ydata(), float), [0.7, 0.75])
  assert "3 runs" in ax.get_title()
  score_bars = ax.containers[0].lines[2][0].get_segments()  # the y error bars of the score line
  std = np.std([0.6, 0.7, 0.8])
  np.testing.assert_allclose([s[:, 1] for s in score_bars], [[0.7 - std, 0.7 + std], [0.75 - std, 0.75 + std]])
  with pytest.raises(ValueError, match="No held-out set 'noisy'"):
    curves.accuracy_curve_figure(runs, "noisy")
  with pytest.raises(ValueError, match=r"No results for \['fastv'\]"):
    curves.accuracy_curve_figure(runs, methods=["fastv"])
  with pytest.raises(FileNotFoundError, match="no eval.json"):
    curves.load_runs(str(tmp_path / "missing"))


def test_viz_command_writes_the_curve_and_refuses_to_overwrite(tmp_path):
  _write_runs(tmp_path / "seeds", [0.6, 0.8])
  cmd = [sys.executable, "-m", "score_jax.viz", f"--runs={tmp_path / 'seeds'}", f"--out={tmp_path / 'docs'}"]
  done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
  assert done.returncode == 0, done.stderr
  png = tmp_path / "docs" / "curve.png"
  assert Image.open(png).size[0] > 300
  again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
  assert again.returncode == 1 and "error: " in again.stderr and "--overwrite" in again.stderr
