"""The on-disk dataset format for real videos: one JSON object per line of a `.jsonl` file.

    {"id": "vmme-001-1", "video": "videos/fFjv93ACGo8.mp4", "question": "What is the man holding?",
     "options": ["An apple.", "A cup.", "A phone.", "A book."], "answer": "C", "start": 12.0, "end": 48.5}

Fields:
- `video` (required): path of the video file, relative to the folder of the `.jsonl` file (an
  absolute path is used as is). Any container/codec FFmpeg reads (mp4, mkv, webm, avi, ...); a file
  whose extension differs only in case (`x.MP4` for `x.mp4`) is found (`video_files.existing_video`).
- `question` (required): non-empty text.
- `options` (required): 2 to 10 non-empty strings, without letter prefixes ("A. " is added by the
  prompt, see `score_jax.models.prompt`).
- `answer` (required): the letter of the correct option, "A" for `options[0]`, ...; it must name
  one of the options.
- `id` (optional): unique sample id; default `line<N>` (N = 1-based line number).
- `start`, `end` (optional): a time window in seconds; frames are then sampled inside it only.
- anything else (e.g. "task", "duration") is kept in `Sample.meta`. The benchmark converters write
  `task` ("videomme", "mlvu", "longvideobench", "nextqa") and the category fields lmms-eval reports
  by (`score_jax.data.benchmark_tasks`); eval reports then add accuracy per category.

The file is UTF-8 text. Blank lines and lines starting with `#` are ignored. A bad line (bytes that
are not UTF-8, invalid JSON, a missing or malformed field, an answer that is not among the options, a
duplicate id, a video file that does not exist) is skipped: a `SampleProblem` naming "file:LINE" with
a short reason is recorded and logged as a warning, and `ProblemLog.summary` ends the read with one
line "N samples read, M skipped (reasons: ...)". With `strict=True` the first problem raises
`DatasetError` instead. Decoding problems found later (unreadable or truncated video, no frame in
the video or its window) go into the same `ProblemLog`; a video shorter than the frame count is not a
problem (frames repeat, see `score_jax.data.video_decode`). A split left with no usable sample is an error
(`no_usable_samples`) where a cache is built or a split is opened for training or eval.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import os
from typing import Any, Callable, Sequence

from absl import logging

from score_jax.data.video_files import existing_video

LETTERS = "ABCDEFGHIJ"
MIN_OPTIONS, MAX_OPTIONS = 2, len(LETTERS)
KNOWN_FIELDS = ("id", "video", "question", "options", "answer", "start", "end")

# Short reason codes (the summary counts them).
BAD_ENCODING = "bad_encoding"
BAD_JSON = "bad_json"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"
ANSWER_NOT_IN_OPTIONS = "answer_not_in_options"
DUPLICATE_ID = "duplicate_id"
MISSING_VIDEO = "missing_video"
UNREADABLE_VIDEO = "unreadable_video"
TRUNCATED_VIDEO = "truncated_video"
NO_FRAMES = "no_frames"


class DatasetError(ValueError):
  """A dataset sample that cannot be used (raised in strict mode, or for an unreadable dataset file)."""


@dataclasses.dataclass(frozen=True)
class Sample:
  """One validated multiple-choice question about a video."""
  id: str
  video: str                  # absolute path
  question: str
  options: tuple[str, ...]
  answer: int                 # index into options
  start: float | None = None  # seconds
  end: float | None = None
  source: str = ""            # "file.jsonl:LINE", for messages
  meta: dict = dataclasses.field(default_factory=dict, compare=False)

  @property
  def answer_letter(self) -> str:
    return LETTERS[self.answer]


@dataclasses.dataclass(frozen=True)
class SampleProblem:
  """Why one sample was skipped."""
  source: str     # "file.jsonl:LINE" (or the video path for decoding problems)
  sample_id: str  # "" when not known (e.g. invalid JSON)
  reason: str     # one of the reason codes above
  message: str

  def __str__(self) -> str:
    who = f" (sample {self.sample_id!r})" if self.sample_id else ""
    return f"{self.source}{who}: {self.message} [{self.reason}]"


class ProblemLog:
  """Collects skipped samples: warns about each, raises on the first one if `strict`."""

  def __init__(self, strict: bool = False, name: str = "dataset"):
    self.strict = strict
    self.name = name
    self.problems: list[SampleProblem] = []

  def add(self, problem: SampleProblem) -> None:
    if self.strict:
      raise DatasetError(f"{problem} (strict mode: bad samples are errors; drop --strict to skip them)")
    self.problems.append(problem)
    logging.warning("Skipping %s", problem)

  def counts(self) -> dict[str, int]:
    return dict(sorted(collections.Counter(p.reason for p in self.problems).items()))

  def skipped_ids(self) -> set[str]:
    return {p.sample_id for p in self.problems if p.sample_id}

  def summary(self, num_read: int) -> str:
    """"N samples read, M skipped (reasons: a=1, b=2)"; `num_read` counts every sample seen."""
    m = len(self.problems)
    reasons = format_counts(self.counts()) or "none"
    return f"{self.name}: {num_read} samples read, {m} skipped (reasons: {reasons})"


def format_counts(counts: dict[str, int]) -> str:
  """"a=1, b=2" (sorted by reason)."""
  return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


def no_usable_samples(path: str, counts: dict[str, int]) -> DatasetError:
  """The error for a dataset file none of whose samples can be used; `counts`: skips per reason.

  "data/x.jsonl: no usable samples (3 skipped: bad_json=2, missing_video=1)".
  """
  n = sum(counts.values())
  why = f"{n} skipped: {format_counts(counts)}" if n else "the file holds no sample lines"
  return DatasetError(f"{path}: no usable samples ({why})")


@dataclasses.dataclass
class JsonlDataset:
  """The valid samples of a JSONL file (`Sample`s, or another format's, see `read_records`), the problems
  found, and the file's content hash."""
  path: str
  samples: list
  problems: ProblemLog
  num_lines: int     # samples seen (valid + skipped)
  sha256: str

  def summary(self) -> str:
    return self.problems.summary(self.num_lines)


class BadSample(ValueError):
  """One record that fails validation; `reason` is a reason code above, `sample_id` "" when not known."""

  def __init__(self, reason: str, message: str, sample_id: str = ""):
    super().__init__(message)
    self.reason, self.sample_id = reason, sample_id


def text_field(rec: dict, field: str) -> str:
  """`rec[field]` as non-empty text; `BadSample` (missing_field / bad_field) otherwise."""
  if field not in rec:
    raise BadSample(MISSING_FIELD, f"missing field {field!r}")
  v = rec[field]
  if not isinstance(v, str) or not v.strip():
    raise BadSample(BAD_FIELD, f"field {field!r} must be a non-empty string, got {v!r}")
  return v


def _seconds(rec: dict, field: str) -> float | None:
  v = rec.get(field)
  if v is None:
    return None
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
    raise BadSample(BAD_FIELD, f"field {field!r} must be a non-negative number of seconds, got {v!r}")
  return float(v)


def answer_index(answer: Any, num_options: int) -> int:
  """The option index that an answer letter ("B", "b", "B." or "(B)") names; `BadSample` if none."""
  if not isinstance(answer, str):
    raise BadSample(BAD_FIELD, f"field 'answer' must be an option letter, got {answer!r}")
  letter = answer.strip().strip("().").upper()
  valid = LETTERS[:num_options]
  if len(letter) != 1 or letter not in valid:
    raise BadSample(ANSWER_NOT_IN_OPTIONS,
                     f"answer {answer!r} is not among the options (letters {', '.join(valid)})")
  return valid.index(letter)


def resolve_video(video: str, root: str) -> str:
  """`video` (any media file's path) relative to `root` (the JSONL file's folder), or as is if absolute;
  `~` expanded."""
  video = os.path.expanduser(video)
  return os.path.normpath(video if os.path.isabs(video) else os.path.join(root, video))


def id_field(rec: Any, default_id: str) -> str:
  """The record's id (`default_id` when absent); `BadSample` if `rec` is not a JSON object or the id is bad."""
  if not isinstance(rec, dict):
    raise BadSample(BAD_JSON, f"expected a JSON object, got {type(rec).__name__}")
  sid = rec.get("id", default_id)
  if not isinstance(sid, (str, int)) or isinstance(sid, bool) or str(sid) == "":
    raise BadSample(BAD_FIELD, f"field 'id' must be a non-empty string, got {sid!r}")
  return str(sid)


def options_field(rec: dict) -> tuple[str, ...]:
  """`rec["options"]`: MIN_OPTIONS to MAX_OPTIONS non-empty strings; `BadSample` otherwise."""
  if "options" not in rec:
    raise BadSample(MISSING_FIELD, "missing field 'options'")
  options = rec["options"]
  if (not isinstance(options, list) or not MIN_OPTIONS <= len(options) <= MAX_OPTIONS
      or not all(isinstance(o, str) and o.strip() for o in options)):
    raise BadSample(BAD_FIELD, f"field 'options' must be a list of {MIN_OPTIONS} to {MAX_OPTIONS} "
                                f"non-empty strings, got {options!r}")
  return tuple(options)


def parse_record(rec: Any, root: str, default_id: str, source: str = "") -> Sample:
  """Validates one decoded JSON object and returns a `Sample`; raises `BadSample` (with a reason code)."""
  sid = id_field(rec, default_id)
  video = text_field(rec, "video")
  question = text_field(rec, "question")
  options = options_field(rec)
  if "answer" not in rec:
    raise BadSample(MISSING_FIELD, "missing field 'answer'")
  answer = answer_index(rec["answer"], len(options))
  start, end = _seconds(rec, "start"), _seconds(rec, "end")
  if start is not None and end is not None and end <= start:
    raise BadSample(BAD_FIELD, f"window end={end} must be after start={start}")
  meta = {k: v for k, v in rec.items() if k not in KNOWN_FIELDS}
  return Sample(sid, existing_video(resolve_video(video, root)), question, options, answer, start, end, source, meta)


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def _lines(path: str):
  """(line number, bytes) of each line, read in binary so that one undecodable line spoils only itself."""
  try:
    with open(path, "rb") as f:
      yield from enumerate(f, 1)
  except OSError as e:
    raise DatasetError(f"Dataset file {path} cannot be read ({e.strerror or e}).") from e


def _text_line(raw: bytes, lineno: int) -> str | None:
  """A line's stripped text, None for a blank or `#` comment line; `BadSample(BAD_ENCODING)` if not
  UTF-8 (a UTF-8 byte-order mark on line 1 is dropped)."""
  try:
    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
  except UnicodeDecodeError as e:
    if raw.lstrip().startswith(b"#"):
      return None
    raise BadSample(BAD_ENCODING, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at position {e.start + 1} of the "
                                  "line); re-save the file as UTF-8") from None
  return line if line and not line.startswith("#") else None


def _parse_line(line: str, lineno: int, root: str, source: str, parse: Callable) -> Any:
  """A non-blank line's sample (`parse(rec, root, default_id, source)`); `BadSample` with the sample's id
  when known."""
  try:
    rec = json.loads(line)
  except json.JSONDecodeError as e:
    raise BadSample(BAD_JSON, f"invalid JSON ({e.msg} at column {e.colno})") from None
  try:
    return parse(rec, root, f"line{lineno}", source)
  except BadSample as e:
    if isinstance(rec, dict) and isinstance(rec.get("id"), (str, int)):
      e.sample_id = str(rec["id"])
    raise


def read_records(path: str, parse: Callable, check: Callable | None = None, strict: bool = False,
                 problems: ProblemLog | None = None) -> JsonlDataset:
  """The line loop of every JSONL format: `parse(rec, root, default_id, source)` validates one decoded
  record into a sample with `.id` (raising `BadSample`); `check(sample)`, if given, runs after the
  duplicate-id check (e.g. "its file exists"). Bad lines are skipped (warned, counted) or, if strict,
  raised. Each line is decoded on its own, so a line that is not UTF-8 is one skip (`bad_encoding`),
  not a failed read. Logs the summary line.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise DatasetError(f"Dataset file {path} does not exist.")
  problems = problems or ProblemLog(strict, name=os.path.basename(path))
  root = os.path.dirname(path)
  samples: list = []
  seen: set[str] = set()
  skipped_before = len(problems.problems)
  for lineno, raw in _lines(path):
    source = f"{path}:{lineno}"
    try:
      line = _text_line(raw, lineno)
      if line is None:
        continue
      s = _parse_line(line, lineno, root, source, parse)
      if s.id in seen:
        raise BadSample(DUPLICATE_ID, f"id {s.id!r} was already used by an earlier line", s.id)
      if check is not None:
        check(s)
    except BadSample as e:
      problems.add(SampleProblem(source, e.sample_id, e.reason, str(e)))
      continue
    seen.add(s.id)
    samples.append(s)
  num = len(samples) + len(problems.problems) - skipped_before  # every sample line, good or bad
  ds = JsonlDataset(path, samples, problems, num, file_sha256(path))
  logging.info("%s", ds.summary())
  return ds


def _video_exists(s: Sample) -> None:
  if not os.path.isfile(s.video):
    raise BadSample(MISSING_VIDEO, f"video file {s.video} does not exist", s.id)


def read_jsonl(path: str, strict: bool = False, check_videos: bool = True,
               problems: ProblemLog | None = None) -> JsonlDataset:
  """Reads and validates a JSONL video dataset (`read_records` with `parse_record`); `check_videos` also
  skips samples whose video file does not exist."""
  return read_records(path, parse_record, _video_exists if check_videos else None, strict, problems)


def write_jsonl(records: Sequence[dict], path: str) -> None:
  """Writes records (dicts in the format above), one per line, UTF-8, keys in the documented order."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for rec in records:
      ordered = {k: rec[k] for k in KNOWN_FIELDS if k in rec and rec[k] is not None}
      ordered.update({k: v for k, v in rec.items() if k not in KNOWN_FIELDS})
      f.write(json.dumps(ordered, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


def sample_record(s: Sample, root: str) -> dict:
  """A `Sample` back as a JSONL record, with its video path relative to `root` when inside it."""
  rel = os.path.relpath(s.video, root)
  video = s.video if rel.startswith("..") else rel
  rec = {"id": s.id, "video": video, "question": s.question, "options": list(s.options),
         "answer": s.answer_letter, "start": s.start, "end": s.end}
  rec.update(s.meta)
  return rec
