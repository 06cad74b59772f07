#!/usr/bin/env bash
# Pre-train ELECTRA on the GPUs of one machine.
#
# Default: ONE process that drives every visible GPU. JAX sees all local GPUs and shards the batch over
# them through the config's mesh; no jax.distributed setup is needed. This is the simplest and usually
# the fastest choice on one machine.
# --per_gpu: one process per GPU (JAX_PROCESS_ID i drives GPU i through JAX_LOCAL_DEVICE_IDS), joined by
# jax.distributed over a local coordinator, exactly as the processes of a multi-node job are. Use it to
# rehearse a multi-node run on one machine.
#
# Exit status: pretrain's own. 42 means it was preempted (SIGTERM) after saving a checkpoint of the step it
# stopped at: run the same command again to resume (a scheduler wrapping this script should resubmit on 42).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "${SCRIPT_DIR}/../.." && pwd)

usage() {
  cat <<'EOF'
Usage: launch/gpu/single_node.sh [flags] [-- extra pretrain flags]
  --size SIZE        configs/pretrain.py size: tiny, small, small_plus, base, large   (default: small)
  --workdir DIR      checkpoints and metrics.jsonl; a run resumes from it             (default: workdirs/SIZE)
  --data GLOB        training records (build_data output)                             (default: the config's)
  --eval_data GLOB   evaluation records                                               (default: none)
  --gpus N           use GPUs 0..N-1                                                  (default: all, from nvidia-smi)
  --per_gpu          one process per GPU with jax.distributed (default: one process for all GPUs)
  --port PORT        --per_gpu: coordinator port on this machine                      (default: 12355)
  --python PATH      the Python of the electra_jax virtualenv                         (default: python3)
  --fast             configs/pretrain.py:SIZE,fast: the GPU settings of docs/SPEED.md (bf16, cuDNN
                     attention without attention-probability dropout, unrolled layers below Large); default: faithful
  --dry_run          print the commands, one per line, and run nothing
  -h, --help         this text
Everything after `--` is appended to the pretrain command, e.g. `-- --config.train.batch_size=256`.
Exit status 42: preempted after saving a checkpoint; run the same command again to resume.
EOF
}

LAUNCH_NAME=single_node.sh
# shellcheck source=launch/common.sh
source "${SCRIPT_DIR}/../common.sh"

SIZE="small"
WORKDIR=""
DATA=""
EVAL_DATA=""
GPUS=""
PER_GPU=0
PORT=12355
PYTHON="python3"
DRY_RUN=0
FAST=0
parse_flags "dry_run fast per_gpu" "size workdir data eval_data gpus port python" "$@"
((${#POSITIONAL[@]} == 0)) || die "unknown argument ${POSITIONAL[0]} (see --help)"
OPTION=""
((FAST)) && OPTION=",fast"  # the configs/pretrain.py option with the measured GPU settings

check_size "$SIZE"
WORKDIR=${WORKDIR:-workdirs/${SIZE}}
if [[ -z $GPUS ]]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    GPUS=$(nvidia-smi --list-gpus | wc -l)
  elif ((DRY_RUN)); then
    GPUS=1
  else
    die "nvidia-smi not found; pass --gpus=N"
  fi
fi
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus=$GPUS must be a positive whole number"

PRETRAIN=("$PYTHON" -m electra_jax.pretrain --config="configs/pretrain.py:${SIZE}${OPTION}" --workdir="$WORKDIR")
[[ -z $DATA ]] || PRETRAIN+=(--config.data.train_files="$DATA")
[[ -z $EVAL_DATA ]] || PRETRAIN+=(--config.data.eval_files="$EVAL_DATA")

visible=$(seq -s, 0 $((GPUS - 1)))
cd "$REPO_ROOT"

if ((!PER_GPU)); then
  cmd=(env CUDA_VISIBLE_DEVICES="$visible" "${PRETRAIN[@]}" "${EXTRA_ARGS[@]}")
  if ((DRY_RUN)); then
    quote_all "${cmd[@]}"
    echo
    exit 0
  fi
  echo "+ $(quote_all "${cmd[@]}")" >&2
  exec "${cmd[@]}"
fi

# One process per GPU. Process 0 hosts the coordinator; every process must start for any to proceed.
pids=()
# shellcheck disable=SC2329  # (run by the EXIT trap below)
cleanup() {
  # Stop only the processes this script started, so that one failed process does not leave the
  # others waiting for it at the next collective forever.
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap 'cleanup' EXIT
for ((i = 0; i < GPUS; i++)); do
  cmd=(env CUDA_VISIBLE_DEVICES="$visible" JAX_COORDINATOR_ADDRESS="127.0.0.1:${PORT}" JAX_NUM_PROCESSES="$GPUS"
    JAX_PROCESS_ID="$i" JAX_LOCAL_DEVICE_IDS="$i" "${PRETRAIN[@]}" --multihost "${EXTRA_ARGS[@]}")
  if ((DRY_RUN)); then
    quote_all "${cmd[@]}"
    echo
    continue
  fi
  echo "+ $(quote_all "${cmd[@]}") &" >&2
  "${cmd[@]}" &
  pids+=($!)
done
((DRY_RUN)) && { echo "# the ${GPUS} processes run in the background; the script waits for all of them"; exit 0; }
PREEMPTED=42  # electra_jax.cli.EXIT_PREEMPTED: every process saved the same step and is stopping
status=0
for ((i = 0; i < GPUS; i++)); do
  wait -n || {
    status=$?
    if ((status == PREEMPTED)); then
      wait || true  # the others stop at the same step; let them finish
      echo "single_node.sh: preempted after saving a checkpoint (exit ${PREEMPTED}); run the same command again to resume" >&2
      pids=()
      break
    fi
    echo "single_node.sh: a process exited with status $status; stopping the rest" >&2
    break
  }
done
exit "$status"
