"""How a compressor spreads its token budget over time: kept tokens per frame, one bar group per method."""
from __future__ import annotations

import numpy as np


def kept_per_frame(kept, num_frames: int | None = None) -> np.ndarray:
  """int [T]: kept tokens of each frame from keep flags [T, P] (or [T * P] with `num_frames`)."""
  kept = np.asarray(kept, bool)
  if kept.ndim == 1:
    if not num_frames or kept.size % num_frames:
      raise ValueError(f"{kept.size} flat keep flags need num_frames that divides them (got {num_frames}).")
    kept = kept.reshape(num_frames, -1)
  if kept.ndim != 2:
    raise ValueError(f"Expected keep flags [T, P], got shape {kept.shape}.")
  return kept.sum(-1)


def kept_per_frame_figure(kept_by_method: dict, tokens_per_frame: int | None = None, title: str | None = None):
  """Bar chart of kept tokens per frame, {method: keep flags [T, P]}; a dashed line at the uniform share
  (the mean over frames) of each method, and the frame's token count when `tokens_per_frame` is given."""
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator
  if not kept_by_method:
    raise ValueError("kept_per_frame_figure needs at least one method's keep flags.")
  counts = {m: kept_per_frame(k) for m, k in kept_by_method.items()}
  lengths = {len(c) for c in counts.values()}
  if len(lengths) != 1:
    raise ValueError(f"Every method needs the same number of frames; got {sorted(lengths)}.")
  t = lengths.pop()
  width = 0.8 / len(counts)
  fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * t + 2), 3))
  for j, (m, c) in enumerate(counts.items()):
    ax.bar(np.arange(t) + (j - (len(counts) - 1) / 2) * width, c, width, color=f"C{j}",
           label=f"{m} ({int(c.sum())} kept)")
    ax.axhline(c.mean(), color=f"C{j}", linestyle="--", linewidth=0.8)
  if tokens_per_frame:
    ax.axhline(tokens_per_frame, color="k", linewidth=0.8, label=f"all {tokens_per_frame} tokens")
  ax.set_xlabel("frame")
  ax.set_ylabel("visual tokens kept")
  ax.set_xticks(np.arange(t))
  ax.yaxis.set_major_locator(MaxNLocator(integer=True))
  if title:
    ax.set_title(title, fontsize=10)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  ax.grid(alpha=0.3, axis="y")
  fig.tight_layout()
  return fig
