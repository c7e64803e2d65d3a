"""Does the frozen LLM's own attention find the object a question names? Per decoder layer and question type.

    python benchmarks/llm_question_attention.py --config=experiments/cacovid.py [--set=crowded] [--samples=256]

On the embedded world's held-out videos, for each decoder layer the attention rows of the prompt after the
video (question, options, answer header) onto frame 0's visual tokens, with the whole prompt as the LLM
reads it. Prints, per question type, how often the top token of frame 0 lies on the question's target
(the generator's object masks) when ranked by: the last prompt token's row (FastV's query), the mean row,
the max over rows, and the single prompt position whose row hits most often ("best position"). A diagnostic
for CaCoVID's `policy.init_from_llm` + `policy.question_attention` (BUILD_NOTES.md, issue 13, sixteenth
session): if one position of layer 0 finds the target, a policy whose first layer starts as the LLM's
has the lookup from the start and only learns which question tokens to read.
"""
from __future__ import annotations

from absl import app, flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from score_jax.world.heldout_sets import HELDOUT_SETS

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config (its model is the frozen LLM)")
_SET = flags.DEFINE_enum("set", "crowded", list(HELDOUT_SETS), "held-out set (score_jax/world/heldout_sets.py)")
_SAMPLES = flags.DEFINE_integer("samples", 256, "held-out videos")


def main(argv):
  del argv
  from score_jax import train as train_lib
  from score_jax.data.pipeline import make_iterator
  from score_jax.frozen_llm import load_frozen_llm
  from score_jax.models import prefill, sharding as shd
  from score_jax.models.partial_forward import attention_rows, forward_layers, layer_query_key
  from score_jax.world import heldout_sets
  from score_jax.world.oracle import relevant_token_mask
  from score_jax.world.sources import WorldSource

  config = _CONFIG.value
  llm = load_frozen_llm(config.model, shd.make_mesh((1, 1, 1), devices=jax.devices()[:1]))
  model, params = llm.module, llm.params
  n_layers = model.cfg.text.num_hidden_layers
  lossy = train_lib.lossy_settings(config) if heldout_sets.is_lossy(_SET.value) else None
  src = WorldSource(heldout_sets.world_of(_SET.value, train_lib.WORLD), kind="video", split="heldout",
                    size=_SAMPLES.value, lossy=lossy)

  @jax.jit
  def prompt_rows(visual, prefix, suffix, suffix_len):
    """[B, layers, Ls, N] attention of every prompt position after the video onto the visual tokens, and the
    answer position's index within that prompt."""
    b = visual.shape[0]
    flat = visual.reshape(b, -1, visual.shape[-1])
    n = flat.shape[1]
    inputs = prefill.assemble_inputs(model, params, flat, prefill.all_keep_indices(b, n), prefix, suffix,
                                     suffix_len)
    lp, ls = prefix.shape[1], suffix.shape[1]
    qpos = jnp.broadcast_to(lp + n + 1 + jnp.arange(ls, dtype=jnp.int32), (b, ls))
    rows = []
    for layer in range(n_layers):
      q, k = layer_query_key(model, params, forward_layers(model, params, inputs, layer), inputs.positions, layer)
      q = jnp.take_along_axis(q, qpos[:, :, None, None], axis=1)
      rows.append(attention_rows(q, k, qpos, inputs.valid)[:, :, lp:lp + n])
    return jnp.stack(rows, 1), inputs.answer_index - (lp + n + 1)

  hits: dict = {}
  for raw in make_iterator(src, 32, seed=0, shuffle=False, num_epochs=1, drop_remainder=False, num_threads=1):
    b = train_lib.model_inputs(raw, llm)
    visual = llm.encode(llm.params, b["frames"])
    bsz, t, p, _ = visual.shape
    target = np.asarray(relevant_token_mask(raw["relevant"]).reshape(bsz, t * p))[:, :p]  # frame 0
    rows, answer = jax.device_get(prompt_rows(visual, b["prefix"], b["suffix"], b["suffix_len"]))
    rows, lengths = rows[..., :p], np.asarray(b["suffix_len"])
    for i, qtype in enumerate(str(q) for q in raw["question_type"]):
      for layer in range(n_layers):
        r = rows[i, layer, :lengths[i]]  # [valid prompt positions, P]
        for name, score in (("last", rows[i, layer, answer[i]]), ("mean", r.mean(0)), ("max", r.max(0))):
          hits.setdefault((qtype, layer, name), []).append(bool(target[i][score.argmax()]))
        hits.setdefault((qtype, layer, "positions"), []).append(target[i][r.argmax(1)])
  lines = ["| question type | layer | last token | mean row | max row | best position |", "|---|---|---|---|---|---|"]
  for qtype in sorted({key[0] for key in hits}):
    for layer in range(n_layers):
      per_position = hits[(qtype, layer, "positions")]
      shortest = min(len(x) for x in per_position)  # positions every prompt of the type has
      best = float(np.max(np.mean([x[:shortest] for x in per_position], axis=0)))
      cells = [f"{np.mean(hits[(qtype, layer, name)]):.2f}" for name in ("last", "mean", "max")]
      lines.append(f"| {qtype} | {layer} | " + " | ".join(cells) + f" | {best:.2f} |")
  print(f"Top token of frame 0 on the target ({_SET.value}, {_SAMPLES.value} held-out videos):\n")
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
