"""The four video QA benchmarks: each converted JSONL record's `task`, and the metadata fields that
lmms-eval reports accuracy by (the eval reports break accuracy down by the same fields).

Read from lmms-eval @75571cfe0fa36ca5ec2e6aa2bb268f9d38295af3 (github.com/EvolvingLMMs-Lab/lmms-eval):
- `lmms_eval/tasks/videomme/utils.py` `videomme_aggregate_results`: duration (short/medium/long), domain
  (its "category"), sub_category, task_type;
- `lmms_eval/tasks/mlvu/utils.py` `mlvu_aggregate_results_dev`: task_type; the score it returns is the
  mean of the per-task-type accuracies (M-Avg), not the mean over questions;
- `lmms_eval/tasks/longvideobench/utils.py` `longvideobench_aggregate_results`: duration_group and
  question_category;
- `lmms_eval/tasks/nextqa/utils.py`: the MC task reports exact_match alone; its open-ended aggregation
  groups by the question `type` (CW, CH, TN, TC, DB, DC, DL, DO), the breakdown used here.
"""
from __future__ import annotations

from score_jax.protocol.lmms_eval_prompts import TASKS  # the `task` values that have an lmms-eval prompt

VIDEOMME, MLVU, LONGVIDEOBENCH, NEXTQA = TASKS

# Metadata each converter keeps (besides `task`).
META_FIELDS = {VIDEOMME: ("duration", "domain", "sub_category", "task_type"),
               MLVU: ("task_type", "duration"),
               LONGVIDEOBENCH: ("duration_group", "question_category", "topic_category", "level", "duration"),
               NEXTQA: ("type",)}

# The fields the eval reports break accuracy down by (VideoMME's 30 sub-categories are kept, not tabled).
REPORT_FIELDS = {VIDEOMME: ("duration", "domain", "task_type"), MLVU: ("task_type",),
                 LONGVIDEOBENCH: ("duration_group", "question_category"), NEXTQA: ("type",)}

# Fields whose mean over categories (not over questions) is the benchmark's published score.
MACRO_AVERAGED = {MLVU: "task_type"}
