#!/usr/bin/env bash
# Try the multi-process path on one machine: N CPU processes on loopback, each with D fake devices.
#
#   launch/local_multiprocess.sh 2 4 experiments/smoke.py --config.workdir=/tmp/mp_run
#
# The same code path as a pod: jax.distributed over a coordinator, one global mesh over all devices.
set -euo pipefail
N=${1:-2}; D=${2:-4}; CONFIG=${3:-experiments/smoke.py}; shift $(( $# < 3 ? $# : 3 ))
PORT=${PORT:-$(python -c 'import portpicker; print(portpicker.pick_unused_port())')}
pids=()
for ((i = 0; i < N; i++)); do
  JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=$D SCORE_JAX_COORDINATOR=localhost:$PORT SCORE_JAX_NUM_PROCESSES=$N \
    SCORE_JAX_PROCESS_ID=$i python -m score_jax.train --config="$CONFIG" --distributed "$@" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
exit $status
