"""Build the feature caches of an experiment's datasets: the frozen vision side, run once per video or image.

    python -m score_jax.cache --config=experiments/llava_ov_7b.py [--strict] [--splits=train,eval,images] [--noverify]

For each split whose dataset file is set (`config.data.train_file`, `config.data.eval_file`, JSONL
format of `score_jax.data.jsonl_format`; `config.data.image_file`, image QA format of
`score_jax.data.image_qa_format`; `--splits` names the splits that must be built) it fills
`config.data.cache_dir/<split>` with the visual tokens of `config.model.num_frames` frames per video
(see `score_jax.data.feature_cache`), or of each image once for "images" (its pseudo-videos are
assembled on read, see `score_jax.data.image_feature_cache`). Bad samples are skipped with a warning
and counted in one summary line per split; `--strict` makes them errors. Existing caches are checked
and only missing, stale or corrupt entries are computed. Nothing to build (no dataset file set, or a split named in
`--splits` without one), a split with no usable sample, and a cache that cannot be built are
errors: the command exits non-zero with one "error: ..." line.

Training and eval read a split with `open_source(config, split)`: the cache when it is current,
otherwise (with a warning) the videos (or images), decoded on every read; a split with no usable
sample is a `DatasetError`.
"""
from __future__ import annotations

import functools
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from score_jax.data import feature_cache as fc
from score_jax.data import image_feature_cache as ifc
from score_jax.data import image_pseudo_video as ipv
from score_jax.data import jsonl_format as jf
from score_jax.data.image_qa_format import read_image_jsonl
from score_jax.data import video_decode as vd
from score_jax.data.image_preprocess import PreprocessSettings

IMAGES = "images"  # the split of the image QA set (pseudo-videos of the "images" curriculum stage)
SPLITS = ("train", "eval", IMAGES)
FILE_KEYS = {"train": "train_file", "eval": "eval_file", IMAGES: "image_file"}  # config.data.<key> per split


def _define_flags() -> dict:
  """Command-line flags, defined only when this module runs as a program (imports stay side-effect free)."""
  return dict(
    config=config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config())."),
    strict=flags.DEFINE_bool("strict", False, "treat a bad sample (annotation or video) as an error"),
    splits=flags.DEFINE_list("splits", None, "splits to cache (train, eval, images), each needing its "
                             "config.data file (default: every split whose file is set)"),
    verify=flags.DEFINE_bool("verify", True, "re-read existing entries and check their checksums"),
  )



def model_folder(model_config) -> str:
  """The checkpoint folder of `config.model` (the embedded model is built on first use)."""
  if model_config.kind == "embedded":
    from score_jax.embedded import base_model
    return base_model.ensure_base_model(model_config.checkpoint or base_model.DEFAULT_DIR)
  if model_config.kind == "hf":
    if not model_config.checkpoint:
      raise ValueError("config.model.kind='hf' needs config.model.checkpoint (a local checkpoint folder).")
    return os.path.expanduser(model_config.checkpoint)
  raise ValueError(f"config.model.kind={model_config.kind!r}; expected 'embedded' or 'hf'.")


def num_frames(model_config) -> int:
  if model_config.kind == "embedded" and "num_frames" not in model_config:
    from score_jax.embedded.world_text import WORLD
    return WORLD.frames
  return int(model_config.get("num_frames", 32))


def split_paths(config, split: str) -> tuple[str, str]:
  """(dataset JSONL file, cache folder) of a split; the file is "" when the config has none."""
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
  dataset = os.path.expanduser(config.data.get(FILE_KEYS[split], "") or "")
  cache_root = os.path.expanduser(config.data.get("cache_dir", "") or "")
  return dataset, (os.path.join(cache_root, split) if cache_root else "")


def expected_settings(config, split: str = "train") -> dict:
  """The manifest settings a split's cache for this config must have (no weights loaded onto devices)."""
  from score_jax.models import hf_loading
  from score_jax.models.configs import LlavaOnevisionConfig
  folder = model_folder(config.model)
  cfg = hf_loading.parse_config(folder, LlavaOnevisionConfig.from_hf)
  frames = 1 if split == IMAGES else num_frames(config.model)
  settings = fc.cache_settings(folder, frames, PreprocessSettings.from_folder(folder), config.model.dtype,
                               cfg.tokens_per_frame, cfg.text.hidden_size)
  return ifc.image_cache_settings(settings) if split == IMAGES else settings


def _to_build(config, splits) -> list[tuple[str, str, str]]:
  """(split, dataset file, cache folder) of each split to build; `CacheError` if a named split has no
  file or there is nothing to build. `splits=None`: every split whose file is set."""
  named = splits is not None
  splits = list(SPLITS if splits is None else splits)
  unknown = [s for s in splits if s not in SPLITS]
  if unknown:
    raise fc.CacheError(f"Unknown split(s) {', '.join(map(repr, unknown))} in --splits; expected some of "
                        f"{', '.join(SPLITS)}.")
  out = []
  for split in splits:
    dataset, cache_dir = split_paths(config, split)
    if not dataset:
      if named:
        raise fc.CacheError(f"--splits names {split!r} but config.data.{FILE_KEYS[split]} is not set: set it to "
                            f"the {split} JSONL dataset file, or leave {split} out of --splits.")
      logging.info("config.data.%s is not set; no %s cache.", FILE_KEYS[split], split)
      continue
    if not cache_dir:
      raise fc.CacheError("config.data.cache_dir is not set: set it to the folder the feature caches go to "
                          "(one subfolder per split).")
    out.append((split, dataset, cache_dir))
  if not out and named:
    raise fc.CacheError(f"--splits is empty: name some of {', '.join(SPLITS)}.")
  if not out:
    raise fc.CacheError("Nothing to cache: none of config.data.train_file, config.data.eval_file and "
                        "config.data.image_file is set. Set one or more to a JSONL dataset file (see "
                        "score_jax.data.jsonl_format, or score_jax.data.image_qa_format for image_file) and "
                        "config.data.cache_dir to the folder the caches go to.")
  return out


def build(config, splits=None, strict: bool = False, verify: bool = True, encoder=None) -> dict:
  """Builds or updates each split's cache; {split: CacheReport}.

  `splits=None` builds every split whose file is set; a split named in `splits` must have one. Nothing
  to build raises `CacheError`, a split with no usable sample `DatasetError`.
  """
  reports = {}
  for split, dataset, cache_dir in _to_build(config, splits):
    if encoder is None:
      from score_jax.models import sharding as shd
      mesh = shd.make_mesh(tuple(config.model.mesh))
      encoder = fc.VisionEncoder.load(model_folder(config.model), config.model.dtype, mesh)
    kw = dict(strict=strict, verify=verify, batch_size=config.data.get("cache_batch_size", 4),
              decode_threads=config.data.get("decode_threads", 2))
    if split == IMAGES:
      reports[split] = ifc.build_image_cache(dataset, cache_dir, encoder, **kw)
    else:
      reports[split] = fc.build_cache(dataset, cache_dir, encoder, num_frames(config.model), **kw)
  return reports


def _probe_ok(samples, frames: int, problems: jf.ProblemLog) -> list:
  """Samples whose video header opens and holds a frame in their window (skipped into `problems` otherwise;
  a video shorter than `frames` repeats frames, as lmms-eval does)."""
  out = []
  for s in samples:
    try:
      vd.sample_indices(vd.probe(s.video), frames, s.start, s.end, s.video)
    except vd.VideoDecodeError as e:
      problems.add(jf.SampleProblem(s.source, s.id, e.reason, str(e)))
      continue
    out.append(s)
  return out


def open_source(config, split: str, strict: bool = False, max_options: int | None = None):
  """The split's grain source: `CachedFeatureSource` if its cache is current, else `VideoSampleSource`;
  for "images", `CachedImagePseudoVideoSource`, else `ImagePseudoVideoSource` (pseudo-videos drawn
  with `config.seed`).

  Feed its batches through `feature_cache.model_batch` (or `iterate_batches`): a cached batch has
  "visual", a decoded one "frames" (normalise with `preprocess_settings(config)`, then `llm.encode`).
  """
  dataset, cache_dir = split_paths(config, split)
  if not dataset:
    raise ValueError(f"config.data.{FILE_KEYS[split]} is not set.")
  if split == IMAGES:
    return _open_images(config, dataset, cache_dir, strict, max_options)
  if cache_dir:
    problem = fc.cache_status(cache_dir, expected_settings(config), dataset)
    if problem is None:
      src = fc.CachedFeatureSource(cache_dir, max_options=max_options)
      return _nonempty(src, dataset, src.skipped, src.num_dropped)
    logging.warning("%s; decoding videos on every read (slow). Run `%s` first.", problem, fc.CACHE_COMMAND)
  ds = jf.read_jsonl(dataset, strict=strict)
  samples = _probe_ok(ds.samples, num_frames(config.model), ds.problems)
  logging.info("%s", ds.summary())
  src = fc.VideoSampleSource(samples, num_frames(config.model), preprocess_settings(config), max_options)
  return _nonempty(src, dataset, ds.problems.counts(), len(samples) - len(src))


def _open_images(config, dataset: str, cache_dir: str, strict: bool, max_options: int | None):
  """`open_source` of the image QA split."""
  frames, seed = num_frames(config.model), config.get("seed", 0)
  if cache_dir:
    problem = fc.cache_status(cache_dir, expected_settings(config, IMAGES), dataset)
    if problem is None:
      src = ifc.CachedImagePseudoVideoSource(cache_dir, frames, seed, max_options=max_options)
      return _nonempty(src, dataset, src.skipped, src.num_dropped)
    logging.warning("%s; reading images on every read (slow). Run `%s` first.", problem, fc.CACHE_COMMAND)
  ds = read_image_jsonl(dataset, strict=strict)
  samples = ipv.probe_images(ds.samples, ds.problems)
  logging.info("%s", ds.summary())
  src = ipv.ImagePseudoVideoSource(samples, frames, preprocess_settings(config), seed, max_options)
  return _nonempty(src, dataset, ds.problems.counts(), len(samples) - len(src))


def _nonempty(src, dataset: str, skipped: dict[str, int], dropped: int):
  """`src`, or `DatasetError` naming `dataset` and the skips if it holds no sample (`dropped`: samples with
  more options than the model scores)."""
  if len(src):
    return src
  raise jf.no_usable_samples(dataset, dict(skipped, too_many_options=dropped) if dropped else skipped)


def preprocess_settings(config) -> PreprocessSettings:
  return PreprocessSettings.from_folder(model_folder(config.model))


def main(argv, flag_values: dict):
  del argv
  values = {name: holder.value for name, holder in flag_values.items()}
  if values["config"] is None:
    sys.exit("Pass --config=experiments/<name>.py")
  try:
    reports = build(values["config"], values["splits"], values["strict"], values["verify"])
  except (fc.CacheError, jf.DatasetError) as e:
    sys.exit(f"error: {e}")
  for split, report in reports.items():
    print(f"[{split}] {report.summary()}")


if __name__ == "__main__":
  app.run(functools.partial(main, flag_values=_define_flags()))
