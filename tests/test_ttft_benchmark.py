"""benchmarks/ttft.py on the embedded model at smoke size: every stage and ratio, bounds consistent with the times."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("decode s", "vision s", "policy s", "prefill s")


def tables(out: str) -> dict[str, list[dict]]:
  """Markdown tables under each '## title' of the output: title -> rows as {column: cell}."""
  result = {}
  for section in out.split("\n## ")[1:]:
    title, *lines = section.splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    result[title] = [dict(zip(rows[0], r)) for r in rows[2:]]
  return result


def num(cell: str) -> float:
  return float(re.sub(r"[x%]$", "", cell))


pytestmark = pytest.mark.slow  # ~30 s (a benchmark subprocess); keeps the default run under 15 minutes


@pytest.fixture(scope="module")
def output():
  from score_jax.embedded import base_model
  if not (base_model.is_current(base_model.SHIPPED_DIR) or base_model.is_current(base_model.DEFAULT_DIR)):
    pytest.skip("no current embedded model: the benchmark would build it (minutes)")
  run = subprocess.run([sys.executable, "benchmarks/ttft.py", "--repeats=1", "--ratios=1.0,0.25,0.1"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-3000:]
  return tables(run.stdout)


def test_every_stage_and_ratio(output):
  rows = output["Time to first token per stage"]
  assert [r["kept"] for r in rows] == ["100%", "25%", "10%"]
  assert [int(r["visual tokens"]) for r in rows] == [128, 32, 13]  # 8 frames x 16 tokens; budget() rounding
  for r in rows:
    stages = [num(r[s]) for s in STAGES]
    assert num(r["TTFT s"]) == pytest.approx(sum(stages), rel=2e-3)
    assert min(stages[:2] + stages[3:]) > 0
  assert num(rows[0]["policy s"]) == 0 and min(num(r["policy s"]) for r in rows[1:]) > 0  # no policy at 100%
  assert len({(r["decode s"], r["vision s"]) for r in rows}) == 1  # the same work at every ratio, timed once
  assert len({int(r["prompt tokens"]) - int(r["visual tokens"]) for r in rows}) == 1  # the same question


def test_speedup_and_bounds(output):
  """Speedups and both bounds recomputed from the printed seconds and FLOPs (rounded to 4 digits)."""
  rows = output["Time to first token per stage"]
  fl = {r["kept"]: {c: num(r[c]) for c in ("vision GFLOPs", "policy GFLOPs", "prefill GFLOPs")}
        for r in output["FLOPs per stage (embedded)"]}
  base, f0 = rows[0], fl["100%"]
  assert (base["speedup"], base["FLOP bound"], base["time bound"]) == ("1.00x", "1.00x", "1.00x")
  assert f0["policy GFLOPs"] == 0 and len({f["vision GFLOPs"] for f in fl.values()}) == 1
  assert 1.0 < num(rows[1]["FLOP bound"]) < num(rows[2]["FLOP bound"])  # fewer tokens, more to gain
  for r in rows[1:]:
    f = fl[r["kept"]]
    speedup = num(base["TTFT s"]) / num(r["TTFT s"])
    flop_bound = (f0["vision GFLOPs"] + f0["prefill GFLOPs"]) / sum(f.values())
    time_bound = num(base["TTFT s"]) / (sum(num(r[s]) for s in STAGES[:3])
                                        + num(base["prefill s"]) * f["prefill GFLOPs"] / f0["prefill GFLOPs"])
    assert num(r["speedup"]) == pytest.approx(speedup, abs=0.011)
    assert num(r["FLOP bound"]) == pytest.approx(flop_bound, abs=0.011)
    assert num(r["time bound"]) == pytest.approx(time_bound, abs=0.011)
    assert num(r["speedup / FLOP bound"]) == pytest.approx(100 * speedup / flop_bound, abs=1.5)
    assert num(r["speedup / time bound"]) == pytest.approx(100 * speedup / time_bound, abs=1.5)


def test_policy_share_and_7b_bound(output):
  share = output["Policy cost as a share of the full prefill"]
  assert {(r["shape"], r["kept"], r["measure"]) for r in share} == {
      ("embedded", k, m) for k in ("25%", "10%") for m in ("seconds (measured)", "GFLOPs")} | {
      ("LLaVA-OV-7B", k, "GFLOPs") for k in ("25%", "10%")}
  ov7b = [r for r in share if r["shape"] == "LLaVA-OV-7B"]
  assert all(0 < num(r["policy / full prefill"]) < 1.0 for r in ov7b)  # the SCORE paper's "< 1%"
  title = next(t for t in output if t.startswith("LLaVA-OV-7B FLOPs per stage"))
  bound = {r["kept"]: num(r["FLOP bound"]) for r in output[title]}
  assert bound["100%"] == 1.0 and 2.4 < bound["25%"] < 2.8 and 3.5 < bound["10%"] < 3.8
