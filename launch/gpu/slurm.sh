#!/usr/bin/env bash
#SBATCH --job-name=electra
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --signal=TERM@300
#SBATCH --exclusive
#SBATCH --output=electra-%j.out
# Pre-train ELECTRA on several GPU nodes with Slurm.
#
# Run it on the login node: it submits itself with sbatch, asking for what its flags need. (`sbatch
# launch/gpu/slurm.sh [flags]` from the repository root also works, but then only the #SBATCH lines above ask:
# 2 nodes, 8 GPUs each, one task per node; give sbatch its own --nodes/--gpus-per-node/--ntasks-per-node to
# match, and a job whose tasks or GPUs per node differ from the flags is refused.) Inside the job it starts the
# processes with srun:
#   default    one process per node, driving all of that node's GPUs (JAX_LOCAL_DEVICE_IDS=0,...,G-1);
#   --per_gpu  one process per GPU (JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID picks its GPU).
# Every process gets JAX_COORDINATOR_ADDRESS (the first node of the job, --port), JAX_NUM_PROCESSES and
# JAX_PROCESS_ID (= $SLURM_PROCID), and pretrain's --multihost flag makes it call
# jax.distributed.initialize() with them. With --requeue a preempted job is requeued and resumes from
# the last checkpoint in --workdir: Slurm requeues jobs it preempts itself, and sbatch --signal=TERM@GRACE
# makes the training save and exit 42 shortly before the time limit, on which this script runs
# `scontrol requeue` (without --requeue it exits 42: submit it again to resume).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/gpu/slurm.sh [flags] [-- extra pretrain flags]
  --nodes N           nodes                                                  (default: 2)
  --gpus_per_node G   GPUs per node                                          (default: 8)
  --per_gpu           one process per GPU instead of one per node
  --partition P       Slurm partition                                        (default: the cluster's)
  --account A         Slurm account                                          (default: yours)
  --time T            time limit, e.g. 2-00:00:00                            (default: the partition's)
  --requeue           requeue the job after preemption, node failure or (exit 42) its time limit
  --grace SECONDS     SIGTERM the training this long before the time limit, so it saves   (default: 300)
  --job_name NAME     job name                                               (default: electra-SIZE)
  --size SIZE         configs/pretrain.py size: tiny, small, small_plus, base, large   (default: base)
  --workdir DIR       on a filesystem all nodes share, or gs://             (default: REPO/workdirs/SIZE)
  --data GLOB         training records                                       (default: the config's)
  --eval_data GLOB    evaluation records                                     (default: none)
  --port PORT         coordinator port on the first node                    (default: 12345)
  --python PATH       the Python of the electra_jax virtualenv on the nodes  (default: python3)
  --repo DIR          the electra_jax checkout on the shared filesystem     (default: this script's, or the submit dir)
  --fast              configs/pretrain.py:SIZE,fast: the GPU settings of docs/SPEED.md (bf16, cuDNN
                      attention without attention-probability dropout, unrolled layers below Large); default: faithful
  --dry_run           print the commands, one per line, and run nothing
  -h, --help          this text
Everything after `--` is appended to the pretrain command.
EOF
}

LAUNCH_NAME=slurm.sh
# sbatch runs a copy of this script from its spool folder: there the checkout (and common.sh) is the --repo
# the self-submission below passes.
LAUNCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for arg in "$@"; do
  [[ -f ${LAUNCH_DIR}/common.sh || $arg != --repo=* ]] || LAUNCH_DIR=${arg#--repo=}/launch
done
# shellcheck source=launch/common.sh
source "${LAUNCH_DIR}/common.sh"

ORIGINAL_ARGS=("$@")
NODES=2
GPUS_PER_NODE=8
PER_GPU=0
PARTITION=""
ACCOUNT=""
TIME_LIMIT=""
REQUEUE=0
GRACE=300
JOB_NAME=""
SIZE="base"
WORKDIR=""
DATA=""
EVAL_DATA=""
PORT=12345
PYTHON="python3"
REPO=""
DRY_RUN=0
FAST=0

parse_flags "dry_run fast per_gpu requeue" \
  "nodes gpus_per_node partition account time:TIME_LIMIT job_name size workdir data eval_data port python repo grace" "$@"
((${#POSITIONAL[@]} == 0)) || die "unknown argument ${POSITIONAL[0]} (see --help)"
OPTION=""
((FAST)) && OPTION=",fast"  # the configs/pretrain.py option with the measured GPU settings

check_size "$SIZE"
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes=$NODES must be a positive whole number"
[[ $GPUS_PER_NODE =~ ^[1-9][0-9]*$ ]] || die "--gpus_per_node=$GPUS_PER_NODE must be a positive whole number"
[[ $GRACE =~ ^[0-9]+$ ]] || die "--grace=$GRACE must be a whole number of seconds"
JOB_NAME=${JOB_NAME:-electra-${SIZE}}

if [[ -z $REPO ]]; then
  # sbatch runs a copy of this script from its spool folder, so inside a job the checkout is found
  # through the submit folder unless --repo names it (the self-submission below always does).
  candidate=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [[ -f "${candidate}/setup.py" ]]; then REPO=$candidate; else REPO=${SLURM_SUBMIT_DIR:-$PWD}; fi
fi
WORKDIR=${WORKDIR:-${REPO}/workdirs/${SIZE}}

# The first host of a Slurm node list ("gpu[03-05,09],big7" -> "gpu03"). scontrol knows every syntax;
# the fallback covers the common ones for dry runs away from the cluster.
first_node() {
  local nodelist=$1
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$nodelist" | head -n 1
  elif [[ $nodelist =~ ^([^,\[]+)\[([^],-]+) ]]; then
    echo "${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
  else
    echo "${nodelist%%,*}"
  fi
}

tasks_per_node=1
((PER_GPU)) && tasks_per_node=$GPUS_PER_NODE

if [[ -z ${SLURM_JOB_ID:-} ]]; then
  # On the login node: submit this script, passing every flag through (plus --repo for the spool copy).
  # --signal: the job steps get SIGTERM GRACE seconds before the time limit; training saves and exits 42.
  sbatch_cmd=(sbatch --job-name="$JOB_NAME" --nodes="$NODES" --ntasks-per-node="$tasks_per_node"
    --gpus-per-node="$GPUS_PER_NODE" --exclusive --output="${REPO}/logs/%x-%j.out" --signal="TERM@${GRACE}")
  [[ -z $PARTITION ]] || sbatch_cmd+=(--partition="$PARTITION")
  [[ -z $ACCOUNT ]] || sbatch_cmd+=(--account="$ACCOUNT")
  [[ -z $TIME_LIMIT ]] || sbatch_cmd+=(--time="$TIME_LIMIT")
  ((REQUEUE)) && sbatch_cmd+=(--requeue)
  script_path="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
  passthrough=()
  for a in "${ORIGINAL_ARGS[@]}"; do [[ $a == --dry_run ]] || passthrough+=("$a"); done
  ((DRY_RUN)) || mkdir -p "${REPO}/logs"
  run "${sbatch_cmd[@]}" "$script_path" --repo="$REPO" "${passthrough[@]}"
  if ((DRY_RUN)); then
    echo "# inside the job, on the first node (shown for a job on nodes node[01-$(printf '%02d' "$NODES")]):"
    SLURM_JOB_NODELIST="node[01-$(printf '%02d' "$NODES")]"
    SLURM_JOB_NUM_NODES=$NODES
  else
    exit 0
  fi
fi

# A job submitted by hand (sbatch launch/gpu/slurm.sh) has what its #SBATCH lines or sbatch's flags asked for.
if [[ -n ${SLURM_NTASKS_PER_NODE:-} && ${SLURM_NTASKS_PER_NODE} != "$tasks_per_node" ]]; then
  mode="one process per node"
  ((!PER_GPU)) || mode="--per_gpu with --gpus_per_node=${GPUS_PER_NODE}"
  die "this job has ${SLURM_NTASKS_PER_NODE} tasks per node but ${mode} needs ${tasks_per_node}: submit from the" \
    "login node with bash launch/gpu/slurm.sh FLAGS (it asks sbatch for the right job), or pass sbatch" \
    "--ntasks-per-node=${tasks_per_node}"
fi
if [[ -n ${SLURM_GPUS_PER_NODE:-} && ${SLURM_GPUS_PER_NODE##*:} != "$GPUS_PER_NODE" ]]; then
  die "this job has ${SLURM_GPUS_PER_NODE} GPUs per node but --gpus_per_node=${GPUS_PER_NODE}: pass the same" \
    "number to both (or submit with bash launch/gpu/slurm.sh FLAGS)"
fi
nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-$NODES}}
num_processes=$((nodes * tasks_per_node))
coordinator="$(first_node "${SLURM_JOB_NODELIST:?not inside a Slurm job}"):${PORT}"

pretrain=("$PYTHON" -m electra_jax.pretrain --config="configs/pretrain.py:${SIZE}${OPTION}" --workdir="$WORKDIR" --multihost)
[[ -z $DATA ]] || pretrain+=(--config.data.train_files="$DATA")
[[ -z $EVAL_DATA ]] || pretrain+=(--config.data.eval_files="$EVAL_DATA")
pretrain+=("${EXTRA_ARGS[@]}")

# Per-task values ($SLURM_PROCID, $SLURM_LOCALID) exist only inside each task, so they are read by the
# task's own shell; the single quotes keep this script from expanding them.
# shellcheck disable=SC2016
task_env='export JAX_PROCESS_ID=$SLURM_PROCID;'
if ((PER_GPU)); then
  # shellcheck disable=SC2016
  task_env+=' export JAX_LOCAL_DEVICE_IDS=$SLURM_LOCALID;'
else
  # Under Slurm, jax.distributed.initialize() with no local_device_ids takes [$SLURM_LOCALID] (one process per
  # GPU, its default guess), which would leave a one-process-per-node task on GPU 0: name all the node's GPUs.
  task_env+=" export JAX_LOCAL_DEVICE_IDS=$(seq -s, 0 $((GPUS_PER_NODE - 1)));"
fi
srun_cmd=(srun --nodes="$nodes" --ntasks-per-node="$tasks_per_node" --kill-on-bad-exit=1
  --export="ALL,JAX_COORDINATOR_ADDRESS=${coordinator},JAX_NUM_PROCESSES=${num_processes}")
# Every task must see all of its node's GPUs for JAX_LOCAL_DEVICE_IDS to index them.
((PER_GPU)) && srun_cmd+=(--gpu-bind=none)
PREEMPTED=42  # electra_jax.cli.EXIT_PREEMPTED: every task saved the same step and stopped
status=0
run "${srun_cmd[@]}" bash -c "${task_env} cd $(quote_all "$REPO") && exec $(quote_all "${pretrain[@]}")" || status=$?
if ((DRY_RUN)); then
  if ((REQUEUE)); then
    echo "# on exit status ${PREEMPTED} (preempted after saving a checkpoint):"
    run scontrol requeue "${SLURM_JOB_ID:-JOB_ID}"
  fi
  exit 0
fi
if ((status == PREEMPTED)); then
  if ((REQUEUE)); then
    echo "slurm.sh: preempted after saving a checkpoint (exit ${PREEMPTED}); requeueing job ${SLURM_JOB_ID}" >&2
    run scontrol requeue "$SLURM_JOB_ID"
  else
    echo "slurm.sh: preempted after saving a checkpoint (exit ${PREEMPTED}); submit the job again to resume" >&2
  fi
fi
exit "$status"
