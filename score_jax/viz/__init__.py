"""Pictures of what a compressor keeps: kept-token overlays on the sampled frames (`overlay`), kept
tokens per frame over time (`budget`), and accuracy-versus-retention curves with error bars over seeds
(`curves`); PNG files (`files`) or matplotlib figures shown inline in notebooks.

    python -m score_jax.viz --checkpoint=WORKDIR --runs=workdirs/seeds --out=docs/
"""
from score_jax.viz.budget import kept_per_frame, kept_per_frame_figure
from score_jax.viz.curves import accuracy_curve_figure, load_runs
from score_jax.viz.files import save_figure, save_png
from score_jax.viz.overlay import keep_mask, masks_from_compressed, overlay_figure, overlay_image

__all__ = ["accuracy_curve_figure", "keep_mask", "kept_per_frame", "kept_per_frame_figure", "load_runs",
           "masks_from_compressed", "overlay_figure", "overlay_image", "save_figure", "save_png"]
