"""Feature cache: the frozen vision side (SigLIP + projector + pooling) run once per video, stored on disk.

RL training calls the frozen LLM's decoder many times per sample but its vision side gives the same
visual tokens [T, P, d] every time, so `build_cache` computes them once and training/eval read them
back through a grain source. One cache folder holds:

    manifest.json            settings, dataset hash, one entry per (video, window), the sample list
    tokens-NNNNN.array_record  raw token bytes, one record per entry (written in generations)

Entries are keyed by the video's path (relative to the dataset file), its content fingerprint (size
and a hash of its first and last 64 KiB) and the [start, end] window, so questions about the same video
share one entry and a replaced video gets a new one. The manifest's `settings` hold everything else
the tokens depend on: a hash of the checkpoint's config.json and of every vision-tower/projector
tensor (plus the weight files' sizes), the number of frames, the frame sampling scheme, the
preprocessing (image size, mean/std, resampling) and the stored dtype. Each entry records the
sha256 of its stored bytes.

Opening an existing cache with `build_cache` re-checks it: if the settings differ every entry is
rebuilt; an entry whose bytes do not match its checksum (or whose file is gone) is rebuilt; both
are logged as warnings. Readers (`CachedFeatureSource`) verify each record's checksum on read and
raise `CacheError` on a mismatch (or an unreadable record), naming the record and the command that
rebuilds the cache (`CACHE_COMMAND`), so a corrupt entry is never silently used. New entries go to a
new generation file that is flushed into the manifest every `flush_every` entries, so an
interrupted build resumes where it stopped; files no entry references are deleted. One writer per
cache folder at a time. A dataset with no usable sample is a `DatasetError`, not an empty cache.
`build_entries` runs the same build over another format's samples (image QA: `image_feature_cache`).
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import json
import os
import re
import time
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from score_jax.data import jsonl_format as jf
from score_jax.data import video_decode as vd
from score_jax.data.image_preprocess import PreprocessSettings, normalize, preprocess_frames, resize_frames
from score_jax.models.prompt import PromptEncoder

MANIFEST = "manifest.json"
FORMAT = "score_jax.feature_cache/1"
FRAME_SAMPLING = "linspace(first, last, N, dtype=int) over frames in [start, end]; v1"
TOKEN_FILE = "tokens-{:05d}.array_record"
_TOKEN_RE = re.compile(r"^tokens-(\d{5})\.array_record$")
VISION_PARAMS = ("vision_tower", "multi_modal_projector", "image_newline")
VISION_TENSOR_RE = re.compile(r"(^|\.)(vision_tower|multi_modal_projector)\.")
_READ_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"
CACHE_COMMAND = "python -m score_jax.cache --config=<experiment config>"
REBUILD = f"rerun `{CACHE_COMMAND}` to rebuild it"


class CacheError(RuntimeError):
  """A feature cache that is missing, stale, corrupt or does not match its manifest (or cannot be built)."""


# ---------------------------------------------------------------------------------------- hashing

def _sampled_file_hash(path: str, span: int = 1 << 16) -> str:
  """sha256 of (size, first 64 KiB, last 64 KiB): cheap, and changes when a video is re-encoded or cut
  (an mp4's index, at one end of the file, lists every frame's size)."""
  size = os.path.getsize(path)
  h = hashlib.sha256(str(size).encode())
  with open(path, "rb") as f:
    h.update(f.read(span))
    if size > span:
      f.seek(max(size - span, span))
      h.update(f.read(span))
  return h.hexdigest()[:32]


@functools.lru_cache(maxsize=8)
def _model_fingerprint(folder: str, mtimes: tuple) -> dict:
  from score_jax.models.safetensors_io import SafetensorsFolder
  del mtimes  # part of the lru key only: a rewritten checkpoint is hashed again
  with open(os.path.join(folder, "config.json"), "rb") as f:
    config_sha = hashlib.sha256(f.read()).hexdigest()
  ckpt = SafetensorsFolder(folder)
  h = hashlib.sha256()
  names = sorted(k for k in ckpt.keys() if VISION_TENSOR_RE.search(k))
  if not names:
    raise CacheError(f"Checkpoint {folder!r} has no vision-tower/projector tensors to fingerprint.")
  for name in names:
    x = ckpt.get(name)
    h.update(f"{name}|{x.dtype}|{x.shape}|".encode())
    h.update(np.ascontiguousarray(x).view(np.uint8).reshape(-1).data)
  files = {os.path.basename(p): os.path.getsize(p) for p in sorted({ckpt.file_of(k) for k in ckpt.keys()})}
  return {"config_sha256": config_sha, "vision_tensors_sha256": h.hexdigest(), "weight_file_sizes": files}


def model_fingerprint(folder: str) -> dict:
  """Hashes of config.json and of the vision tower + projector tensors, and the weight files' sizes."""
  folder = os.path.abspath(folder)
  files = sorted(glob.glob(os.path.join(folder, "*.safetensors")) + [os.path.join(folder, "config.json")])
  return _model_fingerprint(folder, tuple((p, os.path.getmtime(p), os.path.getsize(p)) for p in files))


def cache_settings(model_folder: str, num_frames: int, preprocess: PreprocessSettings, dtype: str,
                   tokens_per_frame: int, hidden_size: int) -> dict:
  """Everything the stored tokens depend on besides the video itself."""
  return {"format": FORMAT, "model": model_fingerprint(model_folder), "num_frames": int(num_frames),
          "frame_sampling": FRAME_SAMPLING, "preprocess": preprocess.fingerprint(),
          "dtype": str(jnp.dtype(dtype)), "tokens_per_frame": int(tokens_per_frame),
          "hidden_size": int(hidden_size)}


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
  out = []
  for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if isinstance(x, dict) and isinstance(y, dict):
      out += _diff_keys(x, y, f"{prefix}{k}.")
    elif x != y:
      out.append(prefix + k)
  return out


# ----------------------------------------------------------------------------------- vision side

@dataclasses.dataclass
class VisionEncoder:
  """The frozen vision side only (no decoder weights loaded): normalised frames -> visual tokens."""
  folder: str
  cfg: object
  module: object
  params: dict
  preprocess: PreprocessSettings
  dtype: str
  mesh: object = None

  @classmethod
  def load(cls, folder: str, dtype: str = "float32", mesh=None) -> "VisionEncoder":
    from score_jax.models import hf_loading
    from score_jax.models.configs import LlavaOnevisionConfig
    from score_jax.models.llava_onevision import LlavaOnevision
    cfg = hf_loading.parse_config(folder, LlavaOnevisionConfig.from_hf)
    dt = jnp.dtype(dtype)
    module = LlavaOnevision(cfg, dtype=dt, param_dtype=dt)
    shapes = hf_loading.abstract_params(module, *hf_loading.llava_dummy_inputs(cfg), method=LlavaOnevision.init_all)
    shapes = {k: shapes[k] for k in VISION_PARAMS}
    params = hf_loading.load_params(folder, shapes, hf_loading.LLAVA_COMPONENTS, mesh, dt)
    return cls(os.path.abspath(folder), cfg, module, params, PreprocessSettings.from_folder(folder), str(dt), mesh)

  @property
  def batch_multiple(self) -> int:
    if self.mesh is None:
      return 1
    return int(self.mesh.shape.get("data", 1) * self.mesh.shape.get("fsdp", 1))

  @functools.cached_property
  def _encode(self):
    from score_jax.models import prefill, sharded
    if self.mesh is not None:
      return sharded.make_encode_video(self.module, self.mesh, self.params)
    return jax.jit(functools.partial(prefill.encode_video, self.module))

  def __call__(self, frames: np.ndarray) -> np.ndarray:
    """Normalised float32 [B, T, S, S, 3] -> visual tokens [B, T, P, d] (numpy, `dtype`)."""
    return np.asarray(jax.device_get(self._encode(self.params, jnp.asarray(frames, self.module.dtype))))

  def settings(self, num_frames: int) -> dict:
    return cache_settings(self.folder, num_frames, self.preprocess, self.dtype, self.cfg.tokens_per_frame,
                          self.cfg.text.hidden_size)


# ------------------------------------------------------------------------------------- manifest

@dataclasses.dataclass(frozen=True)
class EntrySpec:
  """What one cache entry is computed from."""
  key: str
  video: str        # absolute path (of the video; of the image in an image cache)
  video_rel: str    # as stored in the manifest
  start: float | None
  end: float | None


def entry_spec(sample: jf.Sample, root: str, video_hashes: dict | None = None) -> EntrySpec:
  """The cache entry of a sample's (video, window); `video_hashes` memoises video fingerprints."""
  return file_entry_spec(sample.video, root, sample.start, sample.end, video_hashes)


def file_entry_spec(path: str, root: str, start: float | None = None, end: float | None = None,
                    file_hashes: dict | None = None) -> EntrySpec:
  """The cache entry of a media file (and window): keyed by its path relative to `root` (the dataset
  file's folder) and its content fingerprint; `file_hashes` memoises the fingerprints."""
  rel = os.path.relpath(path, root)
  rel = path if rel.startswith("..") else rel
  hashes = {} if file_hashes is None else file_hashes
  if path not in hashes:
    hashes[path] = _sampled_file_hash(path)
  return EntrySpec(_entry_key(rel, hashes[path], start, end), path, rel, start, end)


def _entry_key(video_rel: str, video_hash: str, start: float | None, end: float | None) -> str:
  return hashlib.sha256(json.dumps([video_rel, video_hash, start, end]).encode()).hexdigest()[:24]


def read_manifest(cache_dir: str) -> dict | None:
  """The manifest, or None if there is none or it is unreadable (logged)."""
  path = os.path.join(cache_dir, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      m = json.load(f)
    if (not isinstance(m, dict) or not isinstance(m.get("settings"), dict) or m["settings"].get("format") != FORMAT
        or not isinstance(m.get("entries"), dict) or not isinstance(m.get("samples"), list)):
      raise ValueError(f"not a {FORMAT} manifest")
    return m
  except (OSError, ValueError) as e:
    logging.warning("%s is unreadable (%s); the cache is rebuilt from scratch.", path, e)
    return None


def _write_manifest(cache_dir: str, manifest: dict) -> None:
  tmp = os.path.join(cache_dir, MANIFEST + ".tmp")
  with open(tmp, "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(cache_dir, MANIFEST))


class _Readers:
  """Lazily opened ArrayRecord readers, one per token file (dropped when pickled, for grain workers)."""

  def __init__(self, cache_dir: str):
    self.cache_dir = cache_dir
    self._open: dict = {}

  def read(self, file: str, index: int) -> bytes:
    """Record `index` of `file`; `CacheError` naming the file and record if it cannot be read."""
    from array_record.python.array_record_module import ArrayRecordReader
    path = os.path.join(self.cache_dir, file)
    r = self._open.get(file)
    if r is None and not os.path.exists(path):
      raise CacheError(f"{path} is missing (named by {os.path.join(self.cache_dir, MANIFEST)})")
    try:
      if r is None:
        r = self._open.setdefault(file, ArrayRecordReader(path, _READ_OPTIONS))
      return r.read([index])[0]
    except (CacheError, RuntimeError, ValueError, OSError, IndexError, TypeError) as e:
      raise CacheError(f"{path}: record {index} cannot be read ({str(e) or type(e).__name__})") from e

  def close(self):
    for r in self._open.values():
      try:
        r.close()
      except RuntimeError:  # a damaged file reports its damage again on close
        pass
    self._open = {}

  def __getstate__(self):
    return {"cache_dir": self.cache_dir, "_open": {}}


def _entry_ok(readers: _Readers, entry: dict) -> str | None:
  """None if the stored bytes match the entry's checksum, else why not."""
  try:
    raw = readers.read(entry["file"], entry["index"])
  except CacheError as e:
    return f"cannot be read ({e})"
  return _bytes_problem(raw, entry)


def _bytes_problem(raw: bytes, entry: dict) -> str | None:
  """None if `raw` has the entry's size and sha256, else which of them differs."""
  if len(raw) != entry["nbytes"]:
    return f"has {len(raw)} bytes, the manifest says {entry['nbytes']}"
  if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
    return "does not match its sha256 checksum"
  return None


def decode_entry(raw: bytes, entry: dict) -> np.ndarray:
  return np.frombuffer(raw, dtype=jnp.dtype(entry["dtype"])).reshape(entry["shape"])


# ---------------------------------------------------------------------------------------- build

@dataclasses.dataclass
class CacheReport:
  cache_dir: str
  samples: int = 0       # samples in the cache's sample list
  entries: int = 0       # distinct (video, window) entries
  reused: int = 0
  built: int = 0         # new entries
  rebuilt: int = 0       # entries that existed but were stale or corrupt
  seconds: float = 0.0
  problems: jf.ProblemLog | None = None
  num_read: int = 0

  def summary(self) -> str:
    lines = [self.problems.summary(self.num_read)] if self.problems is not None else []
    lines.append(f"feature cache {self.cache_dir}: {self.samples} samples, {self.entries} entries "
                 f"({self.reused} reused, {self.built} built, {self.rebuilt} rebuilt) in {self.seconds:.1f} s")
    return "\n".join(lines)


def load_frames(spec: EntrySpec, num_frames: int, preprocess: PreprocessSettings) -> np.ndarray:
  """Decoded, resized uint8 frames [T, S, S, 3] of one entry (raises `VideoDecodeError`)."""
  frames = vd.decode_video(spec.video, num_frames, spec.start, spec.end)
  return resize_frames(frames, preprocess.image_size, preprocess.resample)


class _GenerationWriter:
  """Appends records to a new tokens-NNNNN.array_record; `flush` closes it and starts the next one."""

  def __init__(self, cache_dir: str, first_gen: int):
    self.cache_dir, self.gen = cache_dir, first_gen
    self.writer, self.pending = None, []

  def write(self, key: str, raw: bytes) -> None:
    from array_record.python.array_record_module import ArrayRecordWriter
    if self.writer is None:
      self.writer = ArrayRecordWriter(self._path() + ".tmp", "group_size:1")
    self.writer.write(raw)
    self.pending.append(key)

  def _path(self) -> str:
    return os.path.join(self.cache_dir, TOKEN_FILE.format(self.gen))

  def flush(self) -> tuple[str, list[str]]:
    """(file name, keys in record order) of the closed file; ("", []) if nothing was written."""
    if self.writer is None:
      return "", []
    self.writer.close()
    os.replace(self._path() + ".tmp", self._path())
    out = (os.path.basename(self._path()), self.pending)
    self.writer, self.pending = None, []
    self.gen += 1
    return out


def _next_generation(cache_dir: str) -> int:
  gens = [int(m.group(1)) for m in map(_TOKEN_RE.match, os.listdir(cache_dir)) if m]
  return max(gens, default=-1) + 1


def cache_record(s, key: str) -> dict:
  """A sample (`jf.Sample` or any with id, question, options, answer, source) as the manifest lists it;
  "task" is its record's benchmark task ("" if none), which the lmms_eval prompt style reads."""
  return {"id": s.id, "question": s.question, "options": list(s.options), "answer": s.answer, "entry": key,
          "source": s.source, "task": str(getattr(s, "meta", {}).get("task") or "")}


def build_cache(dataset_path: str, cache_dir: str, encoder: VisionEncoder, num_frames: int,
                strict: bool = False, verify: bool = True, batch_size: int = 4, decode_threads: int = 2,
                flush_every: int = 256) -> CacheReport:
  """Creates or updates the cache of a JSONL dataset; returns what was reused, built and skipped.

  Bad samples (annotation or video problems) are skipped with a warning and counted, or raise
  `jf.DatasetError` if `strict`; a dataset left with no usable sample raises `jf.DatasetError`
  naming the file and the skips (after writing the manifest that records them). `verify=False`
  skips re-reading existing entries' bytes (their checksums are still checked whenever they are
  read for training or eval).
  """
  ds = jf.read_jsonl(dataset_path, strict=strict)
  root = os.path.dirname(ds.path)
  return build_entries(ds, cache_dir, encoder, encoder.settings(num_frames),
                       lambda s, hashes: entry_spec(s, root, hashes),
                       lambda spec: load_frames(spec, num_frames, encoder.preprocess), vd.VideoDecodeError,
                       verify=verify, batch_size=batch_size, decode_threads=decode_threads, flush_every=flush_every)


def build_entries(ds: jf.JsonlDataset, cache_dir: str, encoder: VisionEncoder, settings: dict, spec_of, load,
                  load_error: type[Exception], verify: bool = True, batch_size: int = 4, decode_threads: int = 2,
                  flush_every: int = 256) -> CacheReport:
  """The build behind `build_cache`, for any read dataset: `spec_of(sample, file_hashes)` is a sample's
  `EntrySpec`, `load(spec)` its resized uint8 frames [T, S, S, 3]; a `load_error` (with a `.reason` code)
  skips the entry's samples into `ds.problems`. Same checks, resumption and errors as `build_cache`."""
  t0 = time.time()
  if not ds.samples:
    raise jf.no_usable_samples(ds.path, ds.problems.counts())
  os.makedirs(cache_dir, exist_ok=True)
  specs: dict[str, EntrySpec] = {}
  users: dict[str, list] = {}
  file_hashes: dict[str, str] = {}
  for s in ds.samples:
    spec = spec_of(s, file_hashes)
    specs.setdefault(spec.key, spec)
    users.setdefault(spec.key, []).append(s)

  report = CacheReport(cache_dir, problems=ds.problems, num_read=ds.num_lines)
  old = read_manifest(cache_dir)
  entries: dict[str, dict] = {}
  stale: set[str] = set()
  if old is not None and old["settings"] != settings:
    logging.warning("%s: cache settings changed (%s); rebuilding all %d entries.", cache_dir,
                    ", ".join(_diff_keys(old["settings"], settings)), len(old["entries"]))
    stale = set(old["entries"])
  elif old is not None:
    readers = _Readers(cache_dir)
    for key, entry in old["entries"].items():
      if key not in specs:
        continue
      problem = _entry_ok(readers, entry) if verify else (
          None if os.path.exists(os.path.join(cache_dir, entry["file"])) else "is missing its token file")
      if problem:
        logging.warning("%s: entry %s (video %s) %s; rebuilding it.", cache_dir, key, entry["video"], problem)
        stale.add(key)
      else:
        entries[key] = entry
    readers.close()
  report.reused = len(entries)

  todo = [specs[k] for k in specs if k not in entries]
  writer = _GenerationWriter(cache_dir, _next_generation(cache_dir))
  failed: set[str] = set()
  multiple = encoder.batch_multiple
  batch_size = -(-max(batch_size, 1) // multiple) * multiple

  def flush():
    name, keys = writer.flush()
    for i, key in enumerate(keys):
      entries[key]["file"], entries[key]["index"] = name, i
    _write_manifest(cache_dir, {"settings": settings, "complete": False, "entries": entries, "samples": []})

  def encode(batch: list[tuple[EntrySpec, np.ndarray]]):
    frames = np.stack([f for _, f in batch])
    pad = batch_size - len(batch)
    if pad:  # one static batch shape: one compilation
      frames = np.concatenate([frames, np.zeros((pad,) + frames.shape[1:], frames.dtype)])
    tokens = encoder(normalize(frames, encoder.preprocess))[:len(batch)]
    for (spec, _), tok in zip(batch, tokens):
      raw = np.ascontiguousarray(tok).tobytes()
      writer.write(spec.key, raw)
      entries[spec.key] = {"file": None, "index": None, "sha256": hashlib.sha256(raw).hexdigest(),
                           "nbytes": len(raw), "shape": list(tok.shape), "dtype": str(tok.dtype),
                           "video": spec.video_rel, "start": spec.start, "end": spec.end}
      if spec.key in stale:
        report.rebuilt += 1
      else:
        report.built += 1
    if len(writer.pending) >= flush_every:
      flush()

  def load_one(spec: EntrySpec):
    try:
      return spec, load(spec), None
    except load_error as e:
      return spec, None, e

  chunk = max(batch_size * 4, decode_threads)
  with concurrent.futures.ThreadPoolExecutor(max(decode_threads, 1)) as pool:
    pending: list[tuple[EntrySpec, np.ndarray]] = []
    for lo in range(0, len(todo), chunk):
      for spec, frames, err in pool.map(load_one, todo[lo:lo + chunk]):
        if err is not None:
          failed.add(spec.key)
          for s in users[spec.key]:
            report.problems.add(jf.SampleProblem(s.source, s.id, err.reason, str(err)))
          continue
        pending.append((spec, frames))
        if len(pending) == batch_size:
          encode(pending)
          pending = []
    if pending:
      encode(pending)
  flush()

  samples = [cache_record(s, k) for k, ss in users.items() if k not in failed for s in ss]
  order = {s.id: i for i, s in enumerate(ds.samples)}
  samples.sort(key=lambda r: order[r["id"]])
  report.samples, report.entries, report.seconds = len(samples), len(entries), time.time() - t0
  manifest = {"settings": settings, "complete": True, "entries": entries, "samples": samples,
              "dataset": {"path": ds.path, "sha256": ds.sha256},
              "skipped": [dataclasses.asdict(p) for p in report.problems.problems],
              "summary": report.summary()}
  _write_manifest(cache_dir, manifest)
  _remove_unreferenced(cache_dir, entries)
  logging.info("%s", report.summary())
  if not samples:
    raise jf.no_usable_samples(ds.path, report.problems.counts())
  return report


def _remove_unreferenced(cache_dir: str, entries: dict) -> None:
  live = {e["file"] for e in entries.values()}
  for name in os.listdir(cache_dir):
    if (_TOKEN_RE.match(name) and name not in live) or name.endswith(".array_record.tmp"):
      os.remove(os.path.join(cache_dir, name))


def cache_status(cache_dir: str, settings: dict | None = None, dataset_path: str | None = None) -> str | None:
  """None if the cache is complete and current, else why not. Checks the settings, the dataset
  file's hash and each video still on disk against the fingerprint its entry was
  built from (size, first and last 64 KiB), so a replaced video is never answered from stale
  tokens; videos no longer on disk are served from the cache."""
  m = read_manifest(cache_dir)
  if m is None:
    return f"no feature cache in {cache_dir}"
  if not m.get("complete"):
    return f"the feature cache in {cache_dir} is incomplete (an interrupted build)"
  if settings is not None and m["settings"] != settings:
    return f"the feature cache in {cache_dir} was built with other settings ({', '.join(_diff_keys(m['settings'], settings))})"
  short = sum(p.get("reason") == "too_few_frames" for p in m.get("skipped", []))  # the skip code before issue 12
  if short:
    return (f"the feature cache in {cache_dir} skipped {short} samples whose videos are shorter than the frame "
            "count; they are now sampled with repeated frames, as lmms-eval does (only those are built)")
  if dataset_path is not None and os.path.exists(dataset_path):
    if jf.file_sha256(dataset_path) != m.get("dataset", {}).get("sha256"):
      return f"{dataset_path} changed since the feature cache in {cache_dir} was built"
    root = os.path.dirname(os.path.abspath(dataset_path))
    for key, entry in m["entries"].items():
      video = os.path.join(root, entry["video"])
      if os.path.exists(video) and _entry_key(entry["video"], _sampled_file_hash(video), entry["start"],
                                              entry["end"]) != key:
        return f"{video} changed since the feature cache in {cache_dir} was built"
  return None


# ------------------------------------------------------------------------------------ grain sources

def _fixed(strings: Sequence[str], width: int) -> np.ndarray:
  return np.asarray(list(strings), dtype=f"<U{max(width, 1)}")


class TextItems:
  """Fixed-width text arrays (same dtype for every item, so grain batches them)."""

  def __init__(self, records: Sequence[dict], max_options: int | None = None):
    self.max_options = max_options or max((len(r["options"]) for r in records), default=jf.MIN_OPTIONS)
    self.q_width = max((len(r["question"]) for r in records), default=1)
    self.o_width = max((len(o) for r in records for o in r["options"]), default=1)
    self.id_width = max((len(r["id"]) for r in records), default=1)
    self.task_width = max((len(r.get("task", "")) for r in records), default=1)

  def item(self, r: dict) -> dict:
    opts = list(r["options"])
    if len(opts) > self.max_options:
      raise CacheError(f"Sample {r['id']!r} has {len(opts)} options; max_options is {self.max_options}.")
    return {"question": _fixed([r["question"]], self.q_width)[0],
            "options": _fixed(opts + [""] * (self.max_options - len(opts)), self.o_width),
            "num_options": np.int32(len(opts)), "answer": np.int32(r["answer"]),
            "id": _fixed([r["id"]], self.id_width)[0], "task": _fixed([r.get("task", "")], self.task_width)[0]}


def keep_answerable(records: list[dict], max_options: int | None, where: str) -> list[int]:
  """Indices of the records with at most `max_options` options (the letters the model scores); the
  others are dropped with one warning."""
  if not max_options:
    return list(range(len(records)))
  keep = [i for i, r in enumerate(records) if len(r["options"]) <= max_options]
  if len(keep) < len(records):
    logging.warning("%s: %d of %d samples have more than %d options (config.model.num_options); skipped.",
                    where, len(records) - len(keep), len(records), max_options)
  return keep


class CachedFeatureSource:
  """grain random-access source over a feature cache.

  Items: visual [T, P, d] (stored dtype), question <U [], options <U [max_options] (padded with ""),
  num_options int32, answer int32 (option index), id <U []. Every read checks the record's sha256.
  `settings`/`dataset_path`, if given, must match the manifest (else `CacheError`: run the cache CLI).
  Samples with more than `max_options` options are left out (warned; counted in `num_dropped`).
  A record that cannot be read or decoded, or does not match its checksum, raises `CacheError` naming
  the record and `CACHE_COMMAND`.
  """

  def __init__(self, cache_dir: str, settings: dict | None = None, dataset_path: str | None = None,
               max_options: int | None = None, verify_reads: bool = True):
    problem = cache_status(cache_dir, settings, dataset_path)
    if problem:
      raise CacheError(f"{problem}; run `{CACHE_COMMAND}` to build or update it.")
    m = read_manifest(cache_dir)
    self.cache_dir = cache_dir
    self.entries = m["entries"]
    self.records = [m["samples"][i] for i in keep_answerable(m["samples"], max_options, cache_dir)]
    self.num_dropped = len(m["samples"]) - len(self.records)
    self.skipped = dict(collections.Counter(p.get("reason", "?") for p in m.get("skipped", [])))
    self.settings = m["settings"]
    self.verify_reads = verify_reads
    self.text = TextItems(self.records, max_options)
    self._readers = _Readers(cache_dir)

  def __len__(self) -> int:
    return len(self.records)

  def visual(self, key: str) -> np.ndarray:
    """The stored tokens of entry `key`; `CacheError` naming the record and `CACHE_COMMAND` if damaged."""
    entry = self.entries.get(key)
    if not isinstance(entry, dict):
      raise CacheError(f"{os.path.join(self.cache_dir, MANIFEST)} has no entry {key}, which a sample names: "
                       f"the cache is corrupt; {REBUILD}.")
    record = f"{os.path.join(self.cache_dir, str(entry.get('file')))}: record {entry.get('index')}"
    corrupt = f"entry {key} (video {entry.get('video')}) of the feature cache {self.cache_dir} is corrupt; {REBUILD}"
    try:
      raw = self._readers.read(entry["file"], entry["index"])
      problem = _bytes_problem(raw, entry) if self.verify_reads else None
      tokens = None if problem else decode_entry(raw, entry)
    except CacheError as e:
      raise CacheError(f"{e}; {corrupt}.") from e
    except (KeyError, TypeError, ValueError) as e:
      raise CacheError(f"{record} cannot be decoded ({type(e).__name__}: {e}); {corrupt}.") from e
    if problem:
      raise CacheError(f"{record} {problem}; {corrupt}.")
    return tokens

  def __getitem__(self, index: int) -> dict:
    r = self.records[int(index)]
    return dict(self.text.item(r), visual=self.visual(r["entry"]))

  def __repr__(self) -> str:
    return f"CachedFeatureSource({self.cache_dir!r}, {len(self)} samples, {len(self.entries)} entries)"


class VideoSampleSource:
  """grain random-access source that decodes videos on the fly (the uncached path).

  Items as `CachedFeatureSource` but with frames uint8 [T, S, S, 3] (resized, not normalised)
  instead of visual. A video that fails to decode raises `VideoDecodeError` naming it. Samples with
  more than `max_options` options are left out (warned).
  """

  def __init__(self, samples: Sequence[jf.Sample], num_frames: int, preprocess: PreprocessSettings,
               max_options: int | None = None):
    records = [cache_record(s, "") for s in samples]
    keep = keep_answerable(records, max_options, "decoded videos")
    self.samples, self.records = [samples[i] for i in keep], [records[i] for i in keep]
    self.num_frames, self.preprocess = num_frames, preprocess
    self.text = TextItems(self.records, max_options)

  def __len__(self) -> int:
    return len(self.samples)

  def __getitem__(self, index: int) -> dict:
    s = self.samples[int(index)]
    spec = EntrySpec("", s.video, s.video, s.start, s.end)
    return dict(self.text.item(self.records[int(index)]), frames=load_frames(spec, self.num_frames, self.preprocess))

  def __repr__(self) -> str:
    return f"VideoSampleSource({len(self)} samples, {self.num_frames} frames)"


# ------------------------------------------------------------------------------------ model batches

def model_batch(batch: dict, prompts: PromptEncoder, suffix_len: int,
                preprocess: PreprocessSettings | None = None) -> dict[str, np.ndarray]:
  """A grain batch of either source -> the model's inputs.

  Returns prefix, suffix, suffix_len, answer, num_options and "visual" (cached source) or "frames"
  (normalised float32, decoded source; needs `preprocess`): the keys of
  `score_jax.embedded.batches.encode_samples`, with "visual" in place of "frames" for the cache.
  """
  from score_jax.embedded.batches import encode_text
  counts = np.asarray(batch["num_options"]).astype(int)
  options = [[str(o) for o in row[:n]] for row, n in zip(batch["options"], counts)]
  text = {k: [str(x) for x in batch[k]] if k in batch else None for k in ("task", "id")}
  out = encode_text([str(q) for q in batch["question"]], options, prompts, suffix_len, text["task"], text["id"])
  if "visual" in batch:
    out["visual"] = np.asarray(batch["visual"])
  else:
    if preprocess is None:
      raise ValueError("model_batch: a batch of decoded frames needs `preprocess` settings to normalise them.")
    out["frames"] = normalize(batch["frames"], preprocess)
  out["answer"] = np.asarray(batch["answer"], np.int32)
  out["num_options"] = counts.astype(np.int32)
  if text["id"] is not None:
    out["id"] = np.asarray(text["id"])  # eval records each sample's result by id (score_jax.category_breakdown)
  return out


def iterate_batches(source, batch_size: int, prompts: PromptEncoder, suffix_len: int,
                    preprocess: PreprocessSettings | None = None, shuffle: bool = False, seed: int = 0,
                    num_epochs: int | None = 1, drop_remainder: bool = False, num_threads: int = 2
                    ) -> Iterator[dict]:
  """Model-ready batches from a source through `score_jax.data.pipeline.make_iterator`."""
  from score_jax.data.pipeline import make_iterator
  it = make_iterator(source, batch_size, seed, shuffle=shuffle, num_epochs=num_epochs,
                     drop_remainder=drop_remainder, num_threads=num_threads)
  for b in it:
    yield model_batch(b, prompts, suffix_len, preprocess)


def decode_dataset(samples: Sequence[jf.Sample], num_frames: int, preprocess: PreprocessSettings,
                   problems: jf.ProblemLog) -> Iterator[tuple[jf.Sample, np.ndarray]]:
  """(sample, normalised frames [T, S, S, 3]) for each sample whose video decodes; others are skipped
  into `problems` (warned, counted; raised if strict)."""
  for s in samples:
    try:
      frames = vd.decode_video(s.video, num_frames, s.start, s.end)
    except vd.VideoDecodeError as e:
      problems.add(jf.SampleProblem(s.source, s.id, e.reason, str(e)))
      continue
    yield s, preprocess_frames(frames, preprocess)

