"""lmms-eval's LLaVA-OneVision prompts and answer parsers, the lmms_eval prompt style, and --dump_prompts.

The golden strings below were typed out from lmms-eval (github.com/EvolvingLMMs-Lab/lmms-eval) at commit
75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3, reading:
- lmms_eval/models/simple/llava_onevision.py (generate_until: "<image>" + "\\n" + context, conv_template
  "qwen_1_5"), with llava/conversation.py (conv_qwen, SeparatorStyle.CHATML) and llava/constants.py
  from LLaVA-NeXT (github.com/LLaVA-VL/LLaVA-NeXT) at df179663ae8b83207df100a1f7af24caec633ff9;
- lmms_eval/tasks/videomme/videomme.yaml + utils.py (videomme_doc_to_text);
- lmms_eval/tasks/mlvu/mlvu_dev.yaml + utils.py (mlvu_doc_to_text);
- lmms_eval/tasks/longvideobench/longvideobench_val_v.yaml + utils.py (longvideobench_doc_to_text);
- lmms_eval/tasks/nextqa/nextqa_mc_test.yaml + utils.py (nextqa_doc_to_text_mc);
and the parsers in lmms_eval/tasks/_task_utils/mcq_extract.py, longvideobench/utils.py, nextqa/utils.py.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from score_jax import config_checks
from score_jax.data import feature_cache as fc
from score_jax.data import jsonl_format as jf
from score_jax.models import prompt
from score_jax.protocol import answer_parsing as ap
from score_jax.protocol import dump_prompts as dp
from score_jax.protocol import lmms_eval_prompts as lp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
TAIL = "<|im_end|>\n<|im_start|>assistant\n"

# (task, question, options, the whole text lmms-eval's llava_onevision wrapper tokenizes)
GOLDEN = [
    ("videomme", "What is the man holding?", ["An apple.", "A cup.", "A phone.", "A book."],
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
     "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
     "Respond with only the letter (A, B, C, or D) of the correct option.\n"
     "What is the man holding?\nA. An apple.\nB. A cup.\nC. A phone.\nD. A book.\n\n"
     "Answer with the option's letter from the given choices directly.<|im_end|>\n<|im_start|>assistant\n"),
    ("mlvu", "What is the main background of the video?", ["Grassland", "Desert", "Ocean", "City"],
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
     "What is the main background of the video?\n(A) Grassland\n(B) Desert\n(C) Ocean\n(D) City\n"
     "Only give the best option.\nBest option: (<|im_end|>\n<|im_start|>assistant\n"),
    ("longvideobench", "What color is the car?", ["red", "blue", "green", "white"],
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
     "What color is the car?\nA. red\nB. blue\nC. green\nD. white\n"
     "Answer with the option's letter from the given choices directly.\n<|im_end|>\n<|im_start|>assistant\n"),
    ("nextqa", "why did the boy pick up the ball ", ["to throw it", "to eat it ", "to hide it", "to clean it",
                                                     "to give it away"],
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
     "why did the boy pick up the ball\nA. to throw it\nB. to eat it\nC. to hide it\nD. to clean it\n"
     "E. to give it away<|im_end|>\n<|im_start|>assistant\n"),
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]


def qwen_like_tokenizer():
  """A byte-level BPE tokenizer (every text round-trips) with Qwen2's ChatML and LLaVA tokens added;
  `<video>` is the last id, as `tiny_llava_config` puts `video_token_index`."""
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast
  vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
  tok = Tokenizer(models.BPE(vocab, []))
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=SPECIAL[1:])
  fast.chat_template = prompt.LLAVA_OV_CHAT_TEMPLATE
  return fast


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """A checkpoint folder with config.json and tokenizer files only (no weights)."""
  from score_jax.testing import hf_reference as ref
  path = str(tmp_path_factory.mktemp("llava_tok"))
  tok = qwen_like_tokenizer()
  tok.save_pretrained(path)
  ref.tiny_llava_config(text=ref.tiny_qwen2_config(vocab_size=len(tok))).save_pretrained(path)
  return path


@pytest.fixture(scope="module")
def encoder(folder):
  return prompt.PromptEncoder.from_folder(folder, style="lmms_eval")


@pytest.mark.parametrize("task,question,options,golden", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_rendered_text_equals_lmms_eval_golden(encoder, task, question, options, golden):
  assert lp.render(task, question, options) == golden
  assert encoder.render_prompt(question, options, task) == golden
  prefix, suffix = encoder.encode(question, options, task)
  tok = encoder.tokenizer
  assert tok.decode(prefix) + "<image>" + tok.decode(suffix) == golden
  assert prefix == tok("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
                       add_special_tokens=False)["input_ids"]
  tail = tok(TAIL, add_special_tokens=False)["input_ids"]
  assert suffix[-len(tail):] == tail and tail[0] == tok.convert_tokens_to_ids("<|im_end|>")


def test_lmms_eval_batch_mixes_tasks_behind_one_prefix(encoder):
  (_, q0, o0, g0), (_, q1, o1, g1) = GOLDEN[0], GOLDEN[3]
  pre, suf, lens = encoder.encode_batch([q0, q1], [o0, o1], 400, tasks=["videomme", "nextqa"])
  assert pre.shape[0] == 2 and (pre[0] == pre[1]).all()
  tok = encoder.tokenizer
  assert tok.decode(suf[1, :lens[1]]) == g1[len(HEAD) - 1:]   # from the "\n" after <image>
  assert tok.decode(suf[0, :lens[0]]) == g0[len(HEAD) - 1:]
  assert lens[0] > lens[1]  # VideoMME's instruction sentence


def test_chat_template_style_is_unchanged(folder):
  enc = prompt.PromptEncoder.from_folder(folder)
  assert enc.style == "hf_chat_template"
  assert enc.render_prompt("What?", ["x", "y"], task="mlvu") == (
      "<|im_start|>user <video>\nWhat?\nA. x\nB. y\nAnswer with the option's letter from the given choices "
      "directly.<|im_end|><|im_start|>assistant\n")


def test_a_sample_without_a_known_task_is_an_error_naming_it(encoder):
  with pytest.raises(prompt.PromptError, match=r"Sample 'q-7' has task ''.*'videomme', 'mlvu', 'longvideobench', "
                                               r"'nextqa'.*prompt_style=hf_chat_template"):
    encoder.encode_batch(["a", "b"], [["x", "y"], ["x", "y"]], 100, tasks=["mlvu", ""], sample_ids=["q-6", "q-7"])
  with pytest.raises(prompt.PromptError, match=r"#0 of the batch \('what'\) has task None"):
    encoder.encode_batch(["what"], [["x", "y"]], 100)
  with pytest.raises(prompt.PromptError, match="needs answer_format='letter'"):
    prompt.PromptEncoder(encoder.tokenizer, answer_format="option_word", style="lmms_eval")
  with pytest.raises(prompt.PromptError, match="prompt_style='chatml'"):
    prompt.PromptEncoder(encoder.tokenizer, style="chatml")


def test_mlvu_question_field_round_trips():
  for stem in ["What is the main background of the video?", "Question: How many?\nOptions:"]:
    text = lp.mlvu_question(stem, ["a (b)", "(B) c"])
    assert text == stem + "\n(A) a (b)\n(B) (B) c"
    assert lp.split_mlvu_question(text) == (stem, ["a (b)", "(B) c"])
  with pytest.raises(lp.LmmsEvalPromptError, match="no stem"):
    lp.split_mlvu_question("(A) x\n(B) y")
  with pytest.raises(lp.LmmsEvalPromptError, match=r"is not option '\(C\) '"):
    lp.split_mlvu_question("Q?\n(A) x\n(B) y\n(D) z")


def test_config_selects_and_checks_the_style():
  import ml_collections
  sys.path.insert(0, os.path.join(REPO, "experiments"))
  try:
    import llava_ov_0_5b
    import llava_ov_7b
  finally:
    sys.path.pop(0)
  for mod in (llava_ov_7b, llava_ov_0_5b):
    c = mod.get_config()
    assert c.model.prompt_style == "lmms_eval"
    config_checks.check_model(c.model)
  bad = ml_collections.ConfigDict({"kind": "embedded", "checkpoint": "", "prompt_style": "lmms"})
  with pytest.raises(ValueError, match=r"config.model.prompt_style='lmms'"):
    config_checks.check_model(bad)
  bad.prompt_style, bad.answer_format = "lmms_eval", "option_word"
  with pytest.raises(ValueError, match="config.model.answer_format='letter'"):
    config_checks.check_model(bad)


def _sample(sid, task, question="What?", options=("x", "y", "z")):
  meta = {"task": task} if task is not None else {}
  return jf.Sample(sid, "/nope.mp4", question, tuple(options), 0, meta=meta)


def test_jsonl_task_reaches_the_model_batch(encoder):
  """cache_record -> TextItems -> a stacked (grain-like) batch -> model_batch: each row gets its task's text."""
  samples = [_sample("a", "mlvu"), _sample("b", "longvideobench", options=("x", "y")), _sample("c", None)]
  records = [fc.cache_record(s, "") for s in samples]
  assert [r["task"] for r in records] == ["mlvu", "longvideobench", ""]
  items = fc.TextItems(records, 3)
  batch = {k: np.stack([items.item(r)[k] for r in records[:2]]) for k in items.item(records[0])}
  out = fc.model_batch(dict(batch, visual=np.zeros((2, 1))), encoder, 120)
  tok = encoder.tokenizer
  assert tok.decode(out["suffix"][0, :out["suffix_len"][0]]).endswith("Best option: (" + TAIL)
  assert tok.decode(out["suffix"][1, :out["suffix_len"][1]]) == (
      "\nWhat?\nA. x\nB. y\nAnswer with the option's letter from the given choices directly.\n" + TAIL)
  batch = {k: np.stack([items.item(r)[k] for r in records[1:]]) for k in items.item(records[0])}
  with pytest.raises(prompt.PromptError, match="Sample 'c' has task ''"):
    fc.model_batch(dict(batch, visual=np.zeros((2, 1))), encoder, 120)


PARSE_CASES = [  # (text, expected option index for every task)
    ("(B) A cup.", 1),
    ("The answer is C.", 2),
    ("D", 3),
    ("  A  ", 0),
    ("I do not know", None),
    ("", None),
]


@pytest.mark.parametrize("task", lp.TASKS)
@pytest.mark.parametrize("text,expected", PARSE_CASES)
def test_parser_reads_lmms_eval_style_outputs(task, text, expected):
  assert ap.parse_answer(task, text, 5 if task == "nextqa" else 4) == expected


def test_parser_quirks_per_task():
  # MLVU's prompt ends with "Best option: (": the model continues "B) text".
  assert ap.parse_answer("mlvu", "B) Desert", 4) == 1
  # extract_mcq_answer (videomme/mlvu) only knows A-D, and a letter at the start outranks a later phrase.
  assert ap.parse_answer("videomme", "E", 5) is None
  assert ap.parse_answer("videomme", "A. The answer is B", 4) == 0
  # LongVideoBench: the first A-E after removing "The answer is" etc.; a letter beyond the options is None.
  assert ap.parse_answer("longvideobench", "The best option is E", 5) == 4
  assert ap.parse_answer("longvideobench", "The best option is E", 4) is None
  # NExT-QA: several bracketed letters -> the last one; a long answer quoting an option's text -> that option.
  assert ap.parse_answer("nextqa", "(A) or rather (C)", 5) == 2
  opts = ["to throw it", "to eat it", "to hide it", "to clean it", "to give it away"]
  assert ap.parse_answer("nextqa", "he picked it up in order to hide it from his sister", 5, opts) == 2
  assert ap.parse_answer("nextqa", "he picked it up in order to hide it from his sister", 5) is None
  with pytest.raises(ValueError, match="No lmms-eval answer parser for task 'mvbench'"):
    ap.parse_answer("mvbench", "A", 4)


def _write_eval_file(tmp_path, records):
  path = tmp_path / "eval.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def _records():
  return [{"id": f"{task}-1", "video": f"videos/{task}.mp4", "question": q, "options": o, "answer": "A",
           "task": task} for task, q, o, _ in GOLDEN]


def _config(folder, eval_file):
  sys.path.insert(0, os.path.join(REPO, "experiments"))
  try:
    import llava_ov_7b
  finally:
    sys.path.pop(0)
  c = llava_ov_7b.get_config()
  c.model.checkpoint, c.model.num_options = folder, 5
  c.data.eval_file = eval_file
  return c


def test_dump_prompts_writes_exact_prompts_and_ids_and_never_overwrites(folder, tmp_path):
  assert not any(f.endswith(".safetensors") for f in os.listdir(folder))
  config = _config(folder, _write_eval_file(tmp_path, _records()))
  out = tmp_path / "prompts.jsonl"
  assert dp.dump_prompts(config, str(out)) == 4
  lines = [json.loads(x) for x in out.read_text().splitlines()]
  tok = qwen_like_tokenizer()
  video_id = tok.convert_tokens_to_ids("<video>")
  assert video_id == len(tok) - 1  # the config's video_token_index
  for line, (task, _, _, golden) in zip(lines, GOLDEN):
    assert line["id"] == f"{task}-1" and line["task"] == task and line["prompt"] == golden
    assert line["input_ids"].count(video_id) == 1
    assert tok.decode(line["input_ids"]) == golden.replace("<image>", "<video>")
  before = out.read_text()
  with pytest.raises(dp.DumpError, match="already exists.*nothing was overwritten"):
    dp.dump_prompts(config, str(out))
  assert out.read_text() == before
  config.eval.samples, config.model.num_options = 2, 4  # eval's selection: <= 4 options, then the first 2
  out2 = tmp_path / "two.jsonl"
  assert dp.dump_prompts(config, str(out2)) == 2
  assert [json.loads(x)["task"] for x in out2.read_text().splitlines()] == ["videomme", "mlvu"]
  config.eval.source = "world"
  with pytest.raises(dp.DumpError, match="config.eval.source='jsonl'"):
    dp.dump_prompts(config, str(tmp_path / "three.jsonl"))


class _Flag:
  def __init__(self, value):
    self.value = value


def test_dump_prompts_error_exits_with_one_line_and_writes_nothing(folder, tmp_path):
  from score_jax import eval as eval_cli
  eval_file = _write_eval_file(tmp_path, _records()[:1] + [dict(_records()[1], task="mvbench")])
  out = tmp_path / "p.jsonl"
  flags = {"config": _Flag(_config(folder, eval_file)), "checkpoint": _Flag([]), "methods": _Flag(None),
           "ratios": _Flag(None), "out": _Flag(None), "dump_prompts": _Flag(str(out))}
  with pytest.raises(SystemExit, match="^error: Sample 'mlvu-1' has task 'mvbench'"):
    eval_cli.main([], flags)
  assert not out.exists()


@pytest.mark.slow  # a fresh interpreter (jax, transformers): ~15 s; main() is tested in-process above
def test_dump_prompts_command_line(folder, tmp_path):
  eval_file = _write_eval_file(tmp_path, _records()[:2])
  out = tmp_path / "p.jsonl"
  cmd = [sys.executable, "-m", "score_jax.eval", "--config=experiments/llava_ov_7b.py",
         f"--config.model.checkpoint={folder}", f"--config.data.eval_file={eval_file}", f"--dump_prompts={out}"]
  r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "2 prompts written" in r.stdout
  assert [json.loads(x)["prompt"] for x in out.read_text().splitlines()] == [GOLDEN[0][3], GOLDEN[1][3]]


def test_image_records_get_lmms_evals_image_multiple_choice_prompt(tmp_path):
  """An image QA record without `task` renders lmms-eval's AI2D "mcq" text (lmms_eval/tasks/ai2d/ai2d.yaml
  and utils.py: ai2d_doc_to_text at LMMS_EVAL_COMMIT): question, "A. text" lines, the post-prompt."""
  from score_jax.data.image_qa_format import read_image_jsonl
  from score_jax.world.png import write_png
  write_png(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
  (tmp_path / "q.jsonl").write_text(json.dumps(
      {"id": "i0", "image": "a.png", "question": "What is on the table?", "options": ["A cup.", "A cat."],
       "answer": 1}) + "\n")
  samples = read_image_jsonl(str(tmp_path / "q.jsonl")).samples
  assert samples[0].meta["task"] == "image_mcq"
  assert lp.render(samples[0].meta["task"], samples[0].question, samples[0].options) == (
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n"
      "What is on the table?\nA. A cup.\nB. A cat.\n"
      "Answer with the option's letter from the given choices directly.<|im_end|>\n<|im_start|>assistant\n")
