#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice: installs score_jax on every worker and starts the same
# command on all hosts at once (JAX finds its peers through the TPU metadata server).
#
#   launch/tpu_pod.sh TPU_NAME ZONE [CONFIG] [extra --config.x=y flags ...]
#   launch/tpu_pod.sh my-v5e-32 us-west4-a experiments/llava_ov_7b.py --config.workdir=gs://bucket/run1
#
# Needs: gcloud with a project set, the TPU VM already created (gcloud compute tpus tpu-vm create
# TPU_NAME --zone ZONE --accelerator-type v5litepod-32 --version v2-alpha-tpuv5-lite), and the
# checkpoint folder and dataset reachable from every worker (same path, e.g. a mounted disk or gcsfuse).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,11p' "$0"; exit 2
fi
TPU_NAME=$1; ZONE=$2; CONFIG=${3:-experiments/curriculum.py}; shift $(( $# < 3 ? $# : 3 ))
REPO_URL=${REPO_URL:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo "")}
BRANCH=${BRANCH:-$(git -C "$(dirname "$0")/.." rev-parse --abbrev-ref HEAD)}
if [[ -z "$REPO_URL" ]]; then
  echo "Set REPO_URL to a git URL the TPU workers can clone." >&2; exit 2
fi
EXTRA="$*"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "
  set -e
  if [[ ! -d score_jax ]]; then git clone -q --branch $BRANCH $REPO_URL score_jax; fi
  cd score_jax && git fetch -q && git checkout -q $BRANCH && git pull -q
  python3 -m pip install -q -U 'jax[tpu]' -e .
  python3 -m score_jax.train --config=$CONFIG --distributed $EXTRA
"
