#!/usr/bin/env bash
# Try the multi-process path on one machine: N CPU processes on loopback, each with D fake devices.
#
#   launch/local_multiprocess.sh [--dry-run] 2 4 experiments/smoke.py --config.batch_size=8 --config.workdir=/tmp/mp_run
#
# The same code path as a pod: jax.distributed over a coordinator, one global mesh over all devices. The
# global batch is split over the mesh's data axis (here N*D = 8 devices), so config.batch_size must be a
# multiple of it; each process reads its own rows of every batch and saves its own data positions.
# --dry-run (or DRY_RUN=1) prints one command line per process instead of starting them.
set -euo pipefail
DRY_RUN=${DRY_RUN:-0}
if [[ ${1:-} == --dry-run ]]; then
  DRY_RUN=1
  shift
fi
N=${1:-2}; D=${2:-4}; CONFIG=${3:-experiments/smoke.py}; shift $(( $# < 3 ? $# : 3 ))
PORT=${PORT:-$(python -c 'import portpicker; print(portpicker.pick_unused_port())')}
pids=()
for ((i = 0; i < N; i++)); do
  cmd=(env JAX_PLATFORMS=cpu "JAX_NUM_CPU_DEVICES=$D" "SCORE_JAX_COORDINATOR=localhost:$PORT"
       "SCORE_JAX_NUM_PROCESSES=$N" "SCORE_JAX_PROCESS_ID=$i"
       python -m score_jax.train "--config=$CONFIG" --distributed "$@")
  if [[ $DRY_RUN == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    printf '&\n'
    continue
  fi
  "${cmd[@]}" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit $status
