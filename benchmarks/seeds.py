"""Train and evaluate one experiment over several seeds; print mean ± std per method and ratio.

    python benchmarks/seeds.py --config=experiments/curriculum.py --seeds=0,1,2 --out=workdirs/seeds_score
    python benchmarks/seeds.py --config=experiments/curriculum.py --seeds=0,1,2 --out=workdirs/seeds_grpo \
        --config.rl.advantage=grpo          # an ablation: any --config.x=y applies to every seed

Runs one training at a time (2-core machines: never two at once). Each seed's run lives in
`<out>/seed_<s>` and resumes like any run; the table is also written to `<out>/seeds.md`.
`--reports=DIR,DIR,...` aggregates the `eval.json` of finished evaluations instead (e.g. `score_jax.eval --out`
folders of the seeds under another inference setting); nothing is trained, and the table is only printed.
`--by_category=question_type [--pool=static=static_color+static_shape]` adds mean ± std per category of the
evaluations' per-category tables, and of pooled groups of categories (sample-weighted within each run).
"""
from __future__ import annotations

import os

from absl import app, flags
from ml_collections import config_flags

from score_jax import multi_seed, train as train_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "training seeds")
_OUT = flags.DEFINE_string("out", None, "folder for the per-seed workdirs and seeds.md")
_REPORTS = flags.DEFINE_list("reports", [], "folders holding eval.json to aggregate instead of training")
_BY = flags.DEFINE_string("by_category", None, "also print mean ± std per category of this field of the evals' "
                          "by_category tables (e.g. question_type)")
_POOL = flags.DEFINE_multi_string("pool", [], "with --by_category, a pooled column NAME=CAT+CAT+... (sample-weighted)")


def category_table(runs: list[dict]) -> str:
  """--by_category's markdown for finished runs, with the --pool columns."""
  pools = {}
  for spec in _POOL.value:
    name, sep, cats = spec.partition("=")
    if not sep or not name or not cats:
      raise app.UsageError(f"--pool={spec!r}: expected NAME=CATEGORY+CATEGORY+...")
    pools[name] = tuple(cats.split("+"))
  return multi_seed.format_categories(multi_seed.category_runs(runs, _BY.value, pools), _BY.value)


def main(argv):
  del argv
  config = _CONFIG.value
  if _REPORTS.value:
    runs = [multi_seed.read_eval(folder) for folder in _REPORTS.value]
    agg = multi_seed.aggregate(runs)
    methods, ratios = multi_seed.rows_and_ratios(agg)
    print(multi_seed.format_aggregate(agg, ratios, methods))
    if _BY.value:
      print(category_table(runs))
    return
  out = _OUT.value or os.path.join(os.path.dirname(config.workdir) or ".", "seeds")
  runs = []
  for seed in map(int, _SEEDS.value):
    c = config.copy_and_resolve_references()
    c.seed, c.workdir = seed, multi_seed.seed_workdir(out, seed)
    if not os.path.exists(os.path.join(c.workdir, "eval.json")):
      train_lib.train(c)
    runs.append(multi_seed.read_eval(c.workdir))
  names = [config.method] + [m for m in config.eval.methods if m != "policy"]
  table = multi_seed.format_aggregate(multi_seed.aggregate(runs), tuple(config.eval.ratios), names)
  if _BY.value:
    table += "\n" + category_table(runs)
  print(table)
  with open(os.path.join(out, "seeds.md"), "w") as f:
    f.write(table + "\n")


if __name__ == "__main__":
  app.run(main)
