"""A small word-level tokenizer in the Hugging Face format, for the embedded model and the tests.

Built with the `tokenizers` library and wrapped as `PreTrainedTokenizerFast`, so it saves to and loads
from a checkpoint folder exactly like a real model's tokenizer (`AutoTokenizer.from_pretrained`).
"""
from __future__ import annotations

from typing import Iterable

from score_jax.models.prompt import LETTERS, LLAVA_OV_CHAT_TEMPLATE

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
BASE_WORDS = ["user", "assistant", "system", "Answer", "with", "the", "option", "s", "letter", "from", "given",
              "choices", "directly", "question", "using", "a", "single", "word", "or", "phrase", "yes", "no", ".", ",", "?", "'",
              "\n"] + list(LETTERS)


def build_word_tokenizer(words: Iterable[str]):
  """`PreTrainedTokenizerFast` over the special tokens, the prompt words and `words`."""
  from tokenizers import Tokenizer, models, pre_tokenizers
  from transformers import PreTrainedTokenizerFast
  vocab: dict[str, int] = {}
  for w in SPECIAL_TOKENS + BASE_WORDS + sorted(set(words)):
    vocab.setdefault(w, len(vocab))
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.Punctuation("isolated")])
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                 additional_special_tokens=SPECIAL_TOKENS[2:])
  fast.chat_template = LLAVA_OV_CHAT_TEMPLATE
  return fast
