#!/usr/bin/env bash
# Issue 16's GPU check, prepared to run in one go on a machine with an NVIDIA GPU (there may be none):
#
#   bash benchmarks/gpu_check.sh           # LLaVA-OV-7B shape, bfloat16, 32 x 196 = 6272 visual tokens
#   bash benchmarks/gpu_check.sh --smoke   # the same steps at toy size, on any machine (the tests run this)
#
# 1. the prefill at 100/25/10% kept with cuDNN's fused attention against XLA's (benchmarks/prefill.py);
# 2. time to first token per stage at the same ratios (benchmarks/ttft.py).
# Tables go to stdout and to $OUT (the device tool's folder) or, without it, a new temporary folder.
# Needs what `pip install -e .` installs (jax with CUDA, flax, optax, ml-collections, PyAV, ...) importable; PYTHONPATH
# is set to this checkout and nothing is installed or downloaded. (An offline machine that lacks some of them, e.g.
# PyAV or ml-collections, needs their wheels brought along.) Record the tables in BUILD_NOTES.md with the device named.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
smoke=0
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  *) echo "usage: $0 [--smoke]" >&2; exit 2 ;;
esac
out="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
mkdir -p "$out"

python3 - <<'PY' | tee "$out/devices.txt"
import jax
print(f"jax {jax.__version__}; backend {jax.default_backend()}; devices {jax.devices()}")
PY
backend="$(python3 -c 'import jax; print(jax.default_backend())')"
if [[ "$smoke" == 0 && "$backend" != "gpu" && "$backend" != "cuda" ]]; then
  echo "gpu_check: no GPU here (JAX's backend is '$backend'); run with --smoke for the toy-size dry run." >&2
  exit 1
fi

if [[ "$smoke" == 1 ]]; then
  prefill_args=(--decoder=tiny --dtype=float32 --frames=2 --tokens_per_frame=16 --text_tokens=8 --repeats=1
                "--attention=auto,xla_lengths")
  ttft_args=(--repeats=1)  # the embedded model
else
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/devices.txt"
  prefill_args=(--decoder=qwen2_7b --dtype=bfloat16 --frames=32 --tokens_per_frame=196 --text_tokens=94 --repeats=5
                "--attention=cudnn,xla")
  ttft_args=(--shape=qwen2_0_5b --dtype=bfloat16 --frames=32 --repeats=5 --attention=auto)
fi

echo "== prefill: fused attention vs XLA =="
python3 benchmarks/prefill.py "${prefill_args[@]}" 2>&1 | tee "$out/prefill.md"
echo "== time to first token =="
python3 benchmarks/ttft.py "${ttft_args[@]}" 2>&1 | tee "$out/ttft.md"
echo "gpu_check: tables in $out"
