#!/usr/bin/env bash
# Runs the pre-training command again each time it exits with status 42, on one TPU worker.
#
# `python -m electra_jax.pretrain` exits 42 when it was preempted (SIGTERM, or a TPU maintenance event
# reaching orbax's preemption sync point) after saving a checkpoint of the step it stopped at. When the VM
# survives that, running the same command again resumes exactly. Any other status (0 done, 1 an error,
# 130 stopped by Ctrl-C / SIGINT, e.g. `pod.sh stop`) is passed through. pod.sh's `start` runs training
# through this script on every worker.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu/keep_training.sh [--max_restarts=N] [--delay_seconds=S] [--dry_run] -- COMMAND...
  --max_restarts N   give up after N restarts (exit 42)        (default: 100)
  --delay_seconds S  wait S seconds before each restart        (default: 10)
  --dry_run          print the command and run nothing
  -h, --help         this text
EOF
}

LAUNCH_NAME=keep_training.sh
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

PREEMPTED=42  # electra_jax.cli.EXIT_PREEMPTED
MAX_RESTARTS=100
DELAY_SECONDS=10
DRY_RUN=0
parse_flags "dry_run" "max_restarts delay_seconds" "$@"
((${#POSITIONAL[@]} == 0)) || die "unknown argument ${POSITIONAL[0]} (see --help)"
set -- "${EXTRA_ARGS[@]}"
(($#)) || die "no command given after --"
[[ $MAX_RESTARTS =~ ^[0-9]+$ ]] || die "--max_restarts=$MAX_RESTARTS must be a whole number"
[[ $DELAY_SECONDS =~ ^[0-9]+$ ]] || die "--delay_seconds=$DELAY_SECONDS must be a whole number"

if ((DRY_RUN)); then
  printf '%q ' "$@"
  echo
  echo "# run again while it exits with status ${PREEMPTED} (preempted after saving), at most ${MAX_RESTARTS} times"
  exit 0
fi

# A stop request (pod.sh stop sends SIGINT to the training process and to this script) must not be
# followed by a restart, even when it lands while this script waits between two runs.
stop_requested=0
trap 'stop_requested=1' INT TERM
restarts=0
while true; do
  status=0
  "$@" || status=$?
  ((status == PREEMPTED && !stop_requested)) || exit "$status"
  if ((restarts >= MAX_RESTARTS)); then
    echo "${LAUNCH_NAME}: preempted again after ${restarts} restarts; giving up (exit ${PREEMPTED})" >&2
    exit "$PREEMPTED"
  fi
  restarts=$((restarts + 1))
  echo "${LAUNCH_NAME}: $(date -u +%FT%TZ) exit status ${PREEMPTED}: preempted after saving a checkpoint;" \
    "restart ${restarts} of at most ${MAX_RESTARTS} in ${DELAY_SECONDS} s" >&2
  sleep "$DELAY_SECONDS"
  ((!stop_requested)) || exit "$PREEMPTED"
done
