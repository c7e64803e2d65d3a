#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice: installs score_jax on every worker and starts the same
# command on all hosts at once (JAX finds its peers through the TPU metadata server).
#
#   launch/tpu_pod.sh [--dry-run] TPU_NAME ZONE [CONFIG] [extra --config.x=y flags ...]
#   launch/tpu_pod.sh my-v5e-64 us-west4-a experiments/llava_ov_7b.py --config.workdir=gs://bucket/run1
#
# Needs: gcloud with a project set, the TPU VM already created (gcloud compute tpus tpu-vm create
# TPU_NAME --zone ZONE --accelerator-type v5litepod-64 --version v2-alpha-tpuv5-lite), and the
# checkpoint folder and dataset reachable from every worker (same path, e.g. a mounted disk or gcsfuse).
# --dry-run (or DRY_RUN=1) prints the gcloud command instead of running it. See launch/README.md.
set -euo pipefail
DRY_RUN=${DRY_RUN:-0}
if [[ ${1:-} == --dry-run ]]; then
  DRY_RUN=1; shift
fi
if [[ $# -lt 2 ]]; then
  sed -n '2,12p' "$0"; exit 2
fi
TPU_NAME=$1; ZONE=$2; CONFIG=${3:-experiments/curriculum.py}; shift $(( $# < 3 ? $# : 3 ))
HERE=$(dirname "$0")/..
REPO_URL=${REPO_URL:-$(git -C "$HERE" remote get-url origin 2>/dev/null || echo "")}
BRANCH=${BRANCH:-$(git -C "$HERE" rev-parse --abbrev-ref HEAD 2>/dev/null || echo "")}
if [[ -z "$REPO_URL" || -z "$BRANCH" ]]; then
  echo "Set REPO_URL (a git URL the TPU workers can clone) and BRANCH." >&2; exit 2
fi
# Every value is shell-quoted into the remote command, so paths and flags with spaces survive ssh.
q() { printf '%q' "$1"; }
EXTRA=""
if (($#)); then EXTRA=$(printf ' %q' "$@"); fi
REMOTE="set -e
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ ! -d score_jax ]]; then git clone -q --branch $(q "$BRANCH") $(q "$REPO_URL") score_jax; fi
cd score_jax && git fetch -q && git checkout -q $(q "$BRANCH") && git pull -q
python3 -m pip install -q -U 'jax[tpu]' -e .
python3 -m score_jax.train --config=$(q "$CONFIG") --distributed$EXTRA"
CMD=(gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command "$REMOTE")
if [[ $DRY_RUN == 1 ]]; then  # one shell command, single-quoted where needed (readable, and shlex parses it)
  for a in "${CMD[@]}"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then printf '%s ' "$a"; else printf "'%s' " "${a//\'/\'\\\'\'}"; fi
  done
  echo
  exit 0
fi
"${CMD[@]}"
