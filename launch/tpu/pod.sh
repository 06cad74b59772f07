#!/usr/bin/env bash
# Pre-train ELECTRA on a Cloud TPU VM or pod slice, end to end, from your workstation.
#
# Every step is idempotent (safe to re-run) and every remote step runs on all workers at once
# (`gcloud compute tpus tpu-vm ssh --worker=all`), in the style of big_vision's run_tpu.sh.
# Run with --dry_run to print the exact commands, one per line, without running anything.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "${SCRIPT_DIR}/../.." && pwd)

usage() {
  cat <<'EOF'
Usage: launch/tpu/pod.sh COMMAND [flags] [-- extra pretrain flags]

Commands:
  create   request the TPU through a queued resource and wait until it is ACTIVE (skipped if it exists)
  setup    copy the code (or git clone --repo) to every worker and build its virtualenv (idempotent)
  stage    upload pre-training records (--local_data) and the vocabulary (--vocab) to GCS (rsync)
  start    start `python -m electra_jax.pretrain` on every worker (nohup; skipped where it already runs)
  up       create + setup + start
  watch    poll the queued resource; when it is PREEMPTED/SUSPENDED/FAILED (or gone), recreate it,
           set it up and start again. Training resumes from the last checkpoint in --workdir.
  status   show the queued resource and whether pretraining runs on each worker
  logs     tail the training log of worker 0 (--worker=N for another)
  stop     stop pretraining on every worker (the TPU stays)
  delete   delete the queued resource and its TPU

Flags (--flag=value or --flag value):
  --name NAME            TPU and queued-resource name                      (default: electra)
  --zone ZONE            GCP zone                                          (default: us-central2-b)
  --project PROJECT      GCP project                                       (default: gcloud's current one)
  --accelerator TYPE     v4-8, v4-32, v5litepod-16, v5litepod-256, v5p-32, v6e-16, ...  (default: v4-32)
  --runtime VERSION      TPU software version                              (default: chosen from --accelerator)
  --spot                 ask for Spot capacity (cheaper, preemptible; pair it with `watch`)
  --reserved             use reserved capacity
  --size SIZE            configs/pretrain.py size: tiny, small, small_plus, base, large   (default: base)
  --bucket gs://BUCKET   where data and checkpoints live (required by stage and start)
  --workdir gs://...     checkpoints, metrics.jsonl, TensorBoard events    (default: BUCKET/electra/SIZE)
  --data GLOB            training records                                  (default: BUCKET/electra/data/train/*.tfrecord*)
  --eval_data GLOB       evaluation records                                (default: none)
  --local_data DIR       stage: local folder of build_data output (*.tfrecord-* + metadata.json)
  --vocab PATH           stage: the vocab.txt / .model the records were built with
  --repo URL             setup: git clone this repository instead of copying the local tree
  --branch BRANCH        setup: branch or tag for --repo                  (default: main)
  --poll_seconds N       watch: seconds between state checks              (default: 300)
  --max_restarts N       watch: give up after this many recoveries         (default: 100)
  --worker N             logs: which worker                                (default: 0)
  --dry_run              print the commands, one per line, and run nothing
  -h, --help             this text
Everything after `--` is appended to the pretrain command, e.g. `-- --config.train.batch_size=512`.

Example (ELECTRA-Base on a v4-32 pod):
  launch/tpu/pod.sh stage --bucket gs://my-bucket --local_data data/owt_512 --vocab data/vocab.txt
  launch/tpu/pod.sh up    --bucket gs://my-bucket --accelerator v4-32 --size base --spot
  launch/tpu/pod.sh watch --bucket gs://my-bucket --accelerator v4-32 --size base --spot
EOF
}

LAUNCH_NAME=pod.sh
# shellcheck source=launch/common.sh
source "${SCRIPT_DIR}/../common.sh"

# ---------------------------------------------------------------------------------------------------
# Flags.

COMMAND=""
NAME="electra"
ZONE="us-central2-b"
PROJECT=""
ACCELERATOR="v4-32"
RUNTIME=""
CAPACITY=""
SIZE="base"
BUCKET=""
WORKDIR=""
DATA=""
EVAL_DATA=""
LOCAL_DATA=""
VOCAB=""
REPO_URL=""
BRANCH="main"
POLL_SECONDS=300
MAX_RESTARTS=100
WORKER=0
DRY_RUN=0

SPOT=0
RESERVED=0
parse_flags "dry_run spot reserved" "name zone project accelerator runtime size bucket workdir data eval_data local_data \
vocab repo:REPO_URL branch poll_seconds max_restarts worker" "$@"
((${#POSITIONAL[@]} <= 1)) || die "only one command, got '${POSITIONAL[0]}' and '${POSITIONAL[1]}'"
COMMAND=${POSITIONAL[0]:-}
((SPOT && RESERVED)) && die "--spot and --reserved exclude each other"
((SPOT)) && CAPACITY="--spot"
((RESERVED)) && CAPACITY="--reserved"

[[ -n $COMMAND ]] || { usage >&2; exit 2; }
check_size "$SIZE"
# TPU names become GCE resource names: lower-case letters, digits and dashes (a space in a name gave the
# original ELECTRA users "Malformed device specification").
[[ $NAME =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] || die "--name=$NAME: use lower-case letters, digits and dashes"
[[ $POLL_SECONDS =~ ^[0-9]+$ ]] || die "--poll_seconds=$POLL_SECONDS must be a whole number"
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || die "--max_restarts=$MAX_RESTARTS must be a whole number"

if [[ -n $BUCKET ]]; then
  [[ $BUCKET == gs://* ]] || BUCKET="gs://${BUCKET}"
  BUCKET=${BUCKET%/}
fi
bucket_required() {
  [[ -n $BUCKET ]] || die "$COMMAND needs --bucket=gs://BUCKET (data and checkpoints live there; TPU VMs lose local disk on preemption)"
}
WORKDIR=${WORKDIR:-${BUCKET:+${BUCKET}/electra/${SIZE}}}
DATA=${DATA:-${BUCKET:+${BUCKET}/electra/data/train/*.tfrecord*}}

if [[ -z $RUNTIME ]]; then
  case $ACCELERATOR in
    v4-*) RUNTIME="tpu-ubuntu2204-base" ;;
    v5litepod-* | v5e-*) RUNTIME="v2-alpha-tpuv5-lite" ;;
    v5p-*) RUNTIME="v2-alpha-tpuv5" ;;
    v6e-*) RUNTIME="v2-alpha-tpuv6e" ;;
    *) die "no default --runtime for --accelerator=$ACCELERATOR; pass --runtime" ;;
  esac
fi

PROJECT_FLAG=()
[[ -z $PROJECT ]] || PROJECT_FLAG=(--project "$PROJECT")
GCLOUD_SCOPE=(--zone "$ZONE" "${PROJECT_FLAG[@]}")

# Where things live on each worker: $HOME stays literal here and is expanded by the remote shell.
REMOTE_HOME="\$HOME"
REMOTE_REPO="${REMOTE_HOME}/electra_jax"
REMOTE_VENV="${REMOTE_HOME}/electra_venv"
REMOTE_LOGS="${REMOTE_HOME}/electra_logs"
CODE_TARBALL="${TMPDIR:-/tmp}/electra_jax_code.tgz"
# pgrep -f patterns (extended regexps) of a worker's training: the python process, or it and keep_training.sh.
PYTHON_PATTERN='^[^ ]*python[^ ]* -m electra_jax[.]pretrain'
RUNNING_PATTERN="${PYTHON_PATTERN}|^([^ ]*/)?bash [^ ]*keep_training[.]sh"

# ---------------------------------------------------------------------------------------------------
# Running or printing commands.

note() {
  # Dry runs print notes as shell comments so that every other line is a command.
  if ((DRY_RUN)); then echo "# $*"; else echo "pod.sh: $*" >&2; fi
}

on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_SCOPE[@]}" --worker=all --command="$1"
}

queued_state() {
  # MISSING only when gcloud says the resource does not exist; any other failure (network, expired credentials)
  # is UNREACHABLE, which the loops wait out instead of recreating a resource that may still be there.
  local err state
  err=$(mktemp)
  if state=$(gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_SCOPE[@]}" \
    --format='value(state.state)' 2>"$err"); then
    echo "$state"
  elif grep -qiE 'NOT_FOUND|not found' "$err"; then
    echo "MISSING"
  else
    echo "UNREACHABLE"
  fi
  rm -f "$err"
}

# ---------------------------------------------------------------------------------------------------
# Steps.

wait_until_active() {
  if ((DRY_RUN)); then
    note "poll every 30 s until the state is ACTIVE:"
    run gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_SCOPE[@]}" --format='value(state.state)'
    return
  fi
  local state
  while true; do
    state=$(queued_state)
    case $state in
      ACTIVE) note "$NAME is ACTIVE"; return 0 ;;
      FAILED | SUSPENDED | PREEMPTED | MISSING) die "queued resource $NAME is $state while waiting for ACTIVE" ;;
      *) note "$NAME is $state; waiting for capacity"; sleep 30 ;;
    esac
  done
}

do_create() {
  local create=(gcloud compute tpus queued-resources create "$NAME" --node-id "$NAME" "${GCLOUD_SCOPE[@]}"
    --accelerator-type "$ACCELERATOR" --runtime-version "$RUNTIME")
  [[ -z $CAPACITY ]] || create+=("$CAPACITY")
  if ((!DRY_RUN)) && [[ $(queued_state) != MISSING ]]; then
    note "queued resource $NAME exists; not creating it again"
  else
    run "${create[@]}"
  fi
  wait_until_active
}

do_setup() {
  local fetch
  if [[ -n $REPO_URL ]]; then
    fetch="if [ -d ${REMOTE_REPO}/.git ]; then git -C ${REMOTE_REPO} fetch -q origin $(quote "$BRANCH")"
    fetch+=" && git -C ${REMOTE_REPO} checkout -q $(quote "$BRANCH") && git -C ${REMOTE_REPO} pull -q --ff-only;"
    fetch+=" else git clone -q --branch $(quote "$BRANCH") $(quote "$REPO_URL") ${REMOTE_REPO}; fi"
  else
    # Ship the local working tree (uncommitted edits included) without git history, virtualenvs, local
    # data or run folders: workers read data from GCS and write to the gs:// workdir.
    run tar -czf "$CODE_TARBALL" -C "$REPO_ROOT" --exclude=.git --exclude='*venv*' --exclude=__pycache__ \
      --exclude='*.egg-info' --exclude=./data --exclude=./workdirs .
    run gcloud compute tpus tpu-vm scp "$CODE_TARBALL" "${NAME}:electra_jax_code.tgz" "${GCLOUD_SCOPE[@]}" --worker=all
    fetch="mkdir -p ${REMOTE_REPO} && tar -xzf \$HOME/electra_jax_code.tgz -C ${REMOTE_REPO}"
  fi
  on_all_workers "${fetch} && bash ${REMOTE_REPO}/launch/tpu/worker_setup.sh --repo=${REMOTE_REPO} --venv=${REMOTE_VENV}"
}

do_stage() {
  bucket_required
  [[ -n $LOCAL_DATA || -n $VOCAB ]] || die "stage needs --local_data=DIR (build_data output) and/or --vocab=PATH"
  local data_dir=${DATA%/*}
  if ((!DRY_RUN)) && gcloud storage buckets describe "$BUCKET" >/dev/null 2>&1; then
    note "bucket $BUCKET exists"
  else
    # The bucket goes in the TPU's region so that reading data and writing checkpoints stay in-region.
    run gcloud storage buckets create "$BUCKET" --location "${ZONE%-*}" "${PROJECT_FLAG[@]}"
  fi
  if [[ -n $LOCAL_DATA ]]; then
    ((DRY_RUN)) || [[ -d $LOCAL_DATA ]] || die "--local_data=$LOCAL_DATA is not a folder"
    run gcloud storage rsync --recursive "$LOCAL_DATA" "$data_dir"
  fi
  if [[ -n $VOCAB ]]; then
    ((DRY_RUN)) || [[ -f $VOCAB ]] || die "--vocab=$VOCAB is not a file"
    run gcloud storage cp "$VOCAB" "${data_dir%/*}/${VOCAB##*/}"
  fi
}

pretrain_command() {
  local args=(--config="configs/pretrain.py:${SIZE}" --workdir="$WORKDIR" --multihost
    --config.data.train_files="$DATA")
  [[ -z $EVAL_DATA ]] || args+=(--config.data.eval_files="$EVAL_DATA")
  args+=("${EXTRA_ARGS[@]}")
  printf '%s' "${REMOTE_VENV}/bin/python -m electra_jax.pretrain $(quote_all "${args[@]}")"
}

do_start() {
  bucket_required
  # The patterns are anchored at the start of a process's command line (a python running the module, or
  # keep_training.sh between two runs), so they cannot match the remote shell running this very line, whose own
  # text names both.
  local remote="cd ${REMOTE_REPO} && mkdir -p ${REMOTE_LOGS} && if pgrep -f '${RUNNING_PATTERN}' >/dev/null;"
  remote+=" then echo \"pretraining already runs on \$(hostname)\";"
  # keep_training.sh runs it again whenever it exits 42 (preempted after saving) while the VM stays up. A job
  # started with & from a non-interactive shell ignores SIGINT, and bash cannot trap a signal ignored at entry:
  # env --default-signal=INT gives `pod.sh stop` back its SIGINT, during start-up and between restarts too.
  remote+=" else nohup env --default-signal=INT bash ${REMOTE_REPO}/launch/tpu/keep_training.sh -- $(pretrain_command)"
  remote+=" >>${REMOTE_LOGS}/pretrain.log 2>&1 </dev/null & fi"
  on_all_workers "$remote"
  note "logs: launch/tpu/pod.sh logs --name=$NAME --zone=$ZONE; metrics: gsutil cat $WORKDIR/metrics.jsonl"
}

do_status() {
  run gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_SCOPE[@]}" --format='value(state.state)'
  on_all_workers "echo \"\$(hostname): \$(pgrep -fc '${PYTHON_PATTERN}' || true) pretrain process(es)\"; tail -n 2 ${REMOTE_LOGS}/pretrain.log 2>/dev/null || true"
}

do_logs() {
  run gcloud compute tpus tpu-vm ssh "$NAME" "${GCLOUD_SCOPE[@]}" --worker="$WORKER" \
    --command="tail -n 200 -f ${REMOTE_LOGS}/pretrain.log"
}

do_stop() {
  on_all_workers "pkill -INT -f 'electra_jax[.]pretrain' || true"
}

do_delete() {
  run gcloud compute tpus queued-resources delete "$NAME" "${GCLOUD_SCOPE[@]}" --force --quiet
}

recover() {
  # A preempted or suspended queued resource never comes back by itself: delete it and ask again.
  local state=$1
  [[ $state == MISSING ]] || do_delete
  do_create
  do_setup
  do_start
}

do_watch() {
  bucket_required
  if ((DRY_RUN)); then
    note "every ${POLL_SECONDS} s, up to ${MAX_RESTARTS} recoveries:"
    run gcloud compute tpus queued-resources describe "$NAME" "${GCLOUD_SCOPE[@]}" --format='value(state.state)'
    note "when the state is PREEMPTED, SUSPENDED or FAILED (or the resource is gone):"
    recover PREEMPTED
    return
  fi
  local restarts=0 state status
  while true; do
    state=$(queued_state)
    case $state in
      ACTIVE) ;;
      PREEMPTED | SUSPENDED | FAILED | MISSING)
        ((restarts < MAX_RESTARTS)) || die "gave up after $restarts recoveries"
        restarts=$((restarts + 1))
        note "$(date -u +%FT%TZ) $NAME is $state: recovery $restarts of at most $MAX_RESTARTS"
        # In a subshell of its own (started with &, so that set -e still stops it at the first failed step): a
        # recovery that fails (no capacity yet, a gcloud error) is tried again at the next poll, not the watcher's end.
        (recover "$state") &
        status=0
        wait $! || status=$?
        ((status == 0)) || note "$(date -u +%FT%TZ) recovery $restarts failed (exit $status); trying again at the next poll"
        ;;
      *) note "$(date -u +%FT%TZ) $NAME is $state" ;;
    esac
    sleep "$POLL_SECONDS"
  done
}

case $COMMAND in
  create) do_create ;;
  setup) do_setup ;;
  stage) do_stage ;;
  start) do_start ;;
  up) bucket_required; do_create; do_setup; do_start ;;
  watch) do_watch ;;
  status) do_status ;;
  logs) do_logs ;;
  stop) do_stop ;;
  delete) do_delete ;;
  *) die "unknown command '$COMMAND' (see --help)" ;;
esac
