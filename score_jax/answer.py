"""Answer a question about a video with a trained compression policy, and say how much faster that was.

    python -m score_jax.answer --checkpoint=workdirs/curriculum --video=clip.mp4 \\
        --question="what color is the moving square" --options=red,blue,green,cyan --ratio=0.1 --out=overlay.png
    python -m score_jax.answer --config=experiments/llava_ov_0_5b.py --config.model.checkpoint=~/models/ov-0.5b \\
        --checkpoint=workdirs/llava_ov_0_5b --video=clip.mp4 --question="What happens after the goal?" --adaptive

Decodes the video (the model's frame count, sampled as lmms-eval does: `score_jax.data.video_decode`),
resizes and normalises the frames with the checkpoint's preprocessing, runs the frozen vision side, the
policy of `--checkpoint` (a training workdir of SCORE or CaCoVID, restored as `score_jax.eval` does;
`workdir/checkpoints/STEP` for an older step) and the prefill with only the kept tokens. With `--options`
it prints the chosen option's letter and text (read as `config.model.answer_reading` says); without, the
text generated greedily with a KV cache (`score_jax.models.generate`, `config.model.max_new_tokens`).
Then the retention, and the time of each stage (decode, vision, policy, prefill, time to first token)
next to the same run with all tokens. Compiled stages are timed on their second call (the first one
compiles; its time is reported apart). `--out` writes the kept-token overlay PNG (`score_jax.viz`); an
existing file is refused. `--config` defaults to the checkpoint's own config (its config.json plus
history). `--ratio` defaults to the ratio the policy was trained at (`rl.ratio`); `--adaptive` lets a
keep/drop policy choose its own number of tokens per video.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from score_jax.models.prompt import LETTERS

STAGES = ("decode", "vision", "policy", "prefill", "time to first token")


class AnswerError(ValueError):
  """A request that cannot be answered as given (video, ratio, options, output path)."""


@dataclasses.dataclass
class Answer:
  """One answered question: the compressed run and the same run with all tokens."""
  text: str                 # "B. red" (with options) or the generated text
  full_text: str
  choice: int | None        # option index (None without options, or when the generated text names none)
  full_choice: int | None
  kept: np.ndarray          # bool [T, P]: kept visual tokens per frame
  frames: np.ndarray        # uint8 [T, S, S, 3]: the sampled frames at the model's input size
  grid: tuple[int, int]     # token grid per frame (gh, gw)
  timings: dict             # seconds per STAGES entry (+ "generate" without options), compressed run
  full_timings: dict        # the same with all tokens ("policy": 0)
  compile_s: float          # first calls of the compiled stages (compilation), not in the timings

  @property
  def retention(self) -> float:
    return float(self.kept.mean())

  @property
  def num_kept(self) -> int:
    return int(self.kept.sum())


# ------------------------------------------------------------------------------------------- checks

def check_options(options) -> None:
  """2 to 10 non-empty options (the letters A-J), or None (an open-ended question)."""
  if options is not None and (not 2 <= len(options) <= len(LETTERS) or not all(str(o).strip() for o in options)):
    empty = " (one is empty)" if not all(str(o).strip() for o in options) else ""
    raise AnswerError(f"--options needs 2 to {len(LETTERS)} non-empty comma-separated options, got "
                      f"{len(options)}{empty}: {','.join(map(str, options))!r}.")


def parse_options(text: str | None) -> list[str] | None:
  """Comma-separated options -> list (None if not given), checked by `check_options`."""
  options = None if text is None else [o.strip() for o in text.split(",")]
  check_options(options)
  return options


def check_request(video: str, question: str, ratio: float | None, adaptive: bool, out: str | None) -> None:
  """Raises AnswerError for a request that cannot succeed, before any model is loaded."""
  if not os.path.isfile(os.path.expanduser(video)):
    raise AnswerError(f"--video {video}: no such video file.")
  if not question or not question.strip():
    raise AnswerError("--question is empty.")
  if ratio is not None and adaptive:
    raise AnswerError("Pass either --ratio or --adaptive, not both.")
  if ratio is not None and not 0.0 < ratio <= 1.0:
    raise AnswerError(f"--ratio={ratio} must be in (0, 1].")
  if out:
    out = os.path.expanduser(out)
    if os.path.exists(out):
      raise AnswerError(f"--out {out} already exists; pass another path (nothing was overwritten).")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
      raise AnswerError(f"--out {out}: its folder does not exist.")


# ------------------------------------------------------------------------------------------- loading

@dataclasses.dataclass
class Model:
  """The frozen LLM, a trained keep policy, and what turns a video file into its input."""
  llm: object
  policy: object            # score_jax.methods.keep_policy.KeepPolicy
  preprocess: object        # score_jax.data.image_preprocess.PreprocessSettings
  run_config: object        # the policy's training config
  num_frames: int


def load_model(config, checkpoint: str) -> Model:
  """The frozen LLM of `config.model` (None: the checkpoint's own config) and the policy of `checkpoint`."""
  from score_jax import cache, config_checks, run_ledger
  from score_jax import eval as eval_lib
  from score_jax.frozen_llm import load_frozen_llm
  from score_jax.methods.keep_policy import as_keep_policy
  from score_jax.models import sharding as shd
  workdir = eval_lib.resolve_checkpoint(checkpoint)[0]  # a wrong path fails before the model loads
  if config is None:
    try:
      config = run_ledger.effective_config(workdir)
    except run_ledger.WorkdirError as e:
      raise eval_lib.CheckpointError(str(e)) from None
  config_checks.check_model(config.model)
  llm = load_frozen_llm(config.model, shd.make_mesh(tuple(config.model.mesh)))
  llm.option_ids  # computed outside any trace (a cached property first read under jit would cache a tracer)
  run_config, select = eval_lib.load_policy(checkpoint, llm)
  return Model(llm, as_keep_policy(select), cache.preprocess_settings(config), run_config, llm.num_frames)


# ------------------------------------------------------------------------------------------- running

def _steady(fn, *args):
  """(output, seconds of the second call, seconds of the first): the first call compiles."""
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  t1 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - t1, t1 - t0


def text_batch(llm, question: str, options: list[str] | None) -> dict:
  """Prompt ids of one question (open-ended without options) and, with options, the ids they are scored by."""
  from score_jax.embedded.batches import encode_text
  if options is None:
    prefix, suffix, lengths = llm.prompts.encode_batch([question], [None], llm.suffix_len)
    return {"prefix": prefix, "suffix": suffix, "suffix_len": lengths}
  batch = encode_text([question], [options], llm.prompts, llm.suffix_len)
  if "option_ids" not in batch:  # the letter format: the letters shown, as many as there are options
    batch["option_ids"] = llm.prompts.option_token_ids(len(options))[None]
  batch["num_options"] = np.asarray([len(options)], np.int32)
  batch["options"] = [list(options)]
  return batch


def _option_text(choice: int | None, options: list[str]) -> str:
  return "(names no option)" if choice is None or choice < 0 else f"{LETTERS[choice]}. {options[choice]}"


def answer_question(model: Model, video: str, question: str, options: list[str] | None = None,
                    ratio: float | None = None, adaptive: bool = False) -> Answer:
  """Answers `question` about `video` with the policy's kept tokens and with all tokens (see module doc)."""
  from score_jax import evaluation
  from score_jax.compress.selection import budget
  from score_jax.data import image_preprocess, video_decode
  from score_jax.models import answer_reading, generate, prefill
  llm, pol = model.llm, model.policy
  if adaptive and pol.adaptive is None:
    raise AnswerError("--adaptive needs an adaptive policy (rl.sampler='bernoulli' or 'sized_topk', or SCORE with "
                      f"score_eval.tail > 0); this {model.run_config.method} policy keeps a fixed budget: pass "
                      "--ratio instead.")
  if ratio is None and not adaptive:
    ratio = float(model.run_config.rl.ratio)
  if not adaptive and not 0.0 < ratio <= 1.0:
    raise AnswerError(f"--ratio={ratio} must be in (0, 1].")
  check_options(options)
  batch = text_batch(llm, question, options)
  t0 = time.perf_counter()
  raw = video_decode.decode_video(os.path.expanduser(video), model.num_frames)
  frames = image_preprocess.resize_frames(raw, model.preprocess.image_size, model.preprocess.resample)
  normalised = image_preprocess.normalize(frames, model.preprocess)[None]
  decode_s = time.perf_counter() - t0
  compile_s = 0.0

  visual, vision_s, c = _steady(llm.encode, llm.params, jnp.asarray(normalised, llm.module.dtype))
  compile_s += c
  _, t, p, _ = visual.shape
  n = t * p
  text = {k: jnp.asarray(batch[k]) for k in ("prefix", "suffix", "suffix_len")}

  def keep_of(_visual):
    features = {"visual": _visual, **llm.question_features(text["suffix"], text["suffix_len"])}
    if adaptive:
      return pol.adaptive(features, n)
    return pol.select(features, budget(n, ratio)), None
  (keep, valid), policy_s, c = _steady(keep_of, visual)
  compile_s += c
  flat = visual.reshape(1, n, -1)
  logits_fn = jax.jit(functools.partial(prefill.prefill_logits, llm.module),
                      static_argnames=("position_mode",))

  def run(keep_idx, keep_valid, position_mode):
    """(answer text, choice, prefill seconds, generate seconds or None, compile seconds)."""
    logits, pre_s, comp = _steady(lambda k, v: logits_fn(llm.params, flat, k, text["prefix"], text["suffix"],
                                                         text["suffix_len"], keep_valid=v, position_mode=position_mode),
                                  keep_idx, keep_valid)
    if options is None:
      tok = llm.prompts.tokenizer
      stops = answer_reading.stop_token_ids(tok)
      gen = generate.jit_generate(llm.module)
      tokens, gen_s, c2 = _steady(lambda k, v: gen(
          llm.params, flat, k, text["prefix"], text["suffix"], text["suffix_len"], keep_valid=v,
          position_mode=position_mode, max_new_tokens=llm.reading.max_new_tokens, eos_ids=stops,
          pad_id=answer_reading.pad_token_id(tok)), keep_idx, keep_valid)
      return answer_reading.generated_texts(tok, np.asarray(tokens), stops)[0], None, pre_s, gen_s, comp + c2
    if llm.reading.reading == "logits":
      scores = prefill.option_logprobs(logits, jnp.asarray(batch["option_ids"]), jnp.asarray(batch["num_options"]))
      choice = int(np.argmax(np.asarray(scores)[0]))
    else:  # option_likelihood / generate: the configured reading, as evaluation reads it
      pred = evaluation.answer_fn(llm)(llm.params, flat, keep_idx, evaluation.text_inputs(batch, llm), keep_valid,
                                       position_mode)
      choice = int(np.asarray(pred)[0])
    return _option_text(choice, options), (choice if choice >= 0 else None), pre_s, None, comp

  text_c, choice, pre_c, gen_c, c = run(keep, valid, pol.position_mode)
  compile_s += c
  text_f, choice_f, pre_f, gen_f, c = run(prefill.all_keep_indices(1, n), None, "original")
  compile_s += c

  def stages(policy, pre, gen):
    out = {"decode": decode_s, "vision": vision_s, "policy": policy, "prefill": pre,
           "time to first token": decode_s + vision_s + policy + pre}
    return out if gen is None else dict(out, generate=gen)
  kept = np.zeros(n, bool)
  kept[np.asarray(keep)[0][np.ones(keep.shape[1], bool) if valid is None else np.asarray(valid)[0]]] = True
  return Answer(text_c, text_f, choice, choice_f, kept.reshape(t, p), frames, llm.cfg.pooled_grid,
                stages(policy_s, pre_c, gen_c), stages(0.0, pre_f, gen_f), compile_s)


def format_answer(ans: Answer, max_new_tokens: int | None = None) -> str:
  """The answer, the retention and the timing table (milliseconds), as the command prints them."""
  n = ans.kept.size
  lines = [f"answer: {ans.text}", f"answer with all tokens: {ans.full_text}",
           f"retention: {ans.retention:.1%} ({ans.num_kept} of {n} visual tokens; per frame "
           f"{', '.join(str(int(c)) for c in ans.kept.sum(-1))})", "",
           f"{'ms':<22}{'kept tokens':>12}{'all tokens':>12}"]
  rows = list(STAGES) + (["generate"] if "generate" in ans.timings else [])
  for s in rows:
    label = f"generate ({max_new_tokens} max)" if s == "generate" and max_new_tokens else s
    full = "-" if s == "policy" else f"{1e3 * ans.full_timings[s]:.1f}"
    lines.append(f"{label:<22}{1e3 * ans.timings[s]:>12.1f}{full:>12}")
  ttft, ttft_full = ans.timings["time to first token"], ans.full_timings["time to first token"]
  pre, pre_full = ans.timings["prefill"], ans.full_timings["prefill"]
  lines += [f"with {ans.retention:.1%} of the tokens: time to first token {ttft_full / max(ttft, 1e-9):.2f}x faster, "
            f"prefill {pre_full / max(pre, 1e-9):.2f}x (compilation, not timed: {ans.compile_s:.1f} s)"]
  return "\n".join(lines)


def write_overlay(ans: Answer, path: str, overwrite: bool = False) -> str:
  """The kept-token overlay of `ans` as a PNG (`score_jax.viz.overlay`, default scale); an existing file is
  refused unless `overwrite`."""
  from score_jax.viz import files, overlay
  return files.save_png(path, overlay.overlay_image(ans.frames, ans.kept, grid=ans.grid), overwrite)


# ------------------------------------------------------------------------------------------- command

def _define_flags() -> dict:
  """Command-line flags, defined only when this module runs as a program (imports stay side-effect free)."""
  from absl import flags
  from ml_collections import config_flags
  return dict(
      config=config_flags.DEFINE_config_file("config", None, "experiment config (default: the checkpoint's own)"),
      checkpoint=flags.DEFINE_string("checkpoint", None, "policy's training workdir (or workdir/checkpoints/STEP)"),
      video=flags.DEFINE_string("video", None, "video file (any format FFmpeg reads)"),
      question=flags.DEFINE_string("question", None, "the question"),
      options=flags.DEFINE_string("options", None, "comma-separated options (none: generated answer)"),
      ratio=flags.DEFINE_float("ratio", None, "retention ratio (default: the policy's training rl.ratio)"),
      adaptive=flags.DEFINE_bool("adaptive", False, "keep/drop policies: each video keeps its own number of tokens"),
      out=flags.DEFINE_string("out", None, "write the kept-token overlay to this new PNG file"),
  )


def main(argv, flag_values: dict):
  del argv
  from score_jax import eval as eval_lib
  from score_jax.data import feature_cache, video_decode
  v = {name: holder.value for name, holder in flag_values.items()}
  missing = [f"--{k}" for k in ("checkpoint", "video", "question") if not v[k]]
  if missing:
    sys.exit(f"error: pass {', '.join(missing)}")
  try:
    options = parse_options(v["options"])
    check_request(v["video"], v["question"], v["ratio"], v["adaptive"], v["out"])
    model = load_model(v["config"], v["checkpoint"])
    ans = answer_question(model, v["video"], v["question"], options, v["ratio"], v["adaptive"])
    print(format_answer(ans, model.llm.reading.max_new_tokens if options is None else None))
    if v["out"]:
      print(f"overlay written to {write_overlay(ans, os.path.expanduser(v['out']))}")
  except (AnswerError, eval_lib.CheckpointError, video_decode.VideoDecodeError, feature_cache.CacheError,
          FileExistsError, ValueError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  from absl import app
  app.run(functools.partial(main, flag_values=_define_flags()))
