#!/usr/bin/env bash
# Builds the electra_jax virtualenv on one TPU VM worker. pod.sh runs it on every worker at once.
#
# Idempotent: the venv is created once, and `pip install -e .[tpu]` re-runs only when setup.py changed
# (a stamp file holds its hash), so re-running setup after a code change or a preemption is cheap.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu/worker_setup.sh [--repo=DIR] [--venv=DIR] [--extras=tpu] [--dry_run]
  --repo DIR     the electra_jax checkout on this worker   (default: $HOME/electra_jax)
  --venv DIR     the virtualenv to create or update        (default: $HOME/electra_venv)
  --extras LIST  pip extras to install                     (default: tpu)
  --dry_run      print the commands, one per line, and run nothing
EOF
}

LAUNCH_NAME=worker_setup.sh
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

REPO="${HOME}/electra_jax"
VENV="${HOME}/electra_venv"
EXTRAS="tpu"
DRY_RUN=0
parse_flags "dry_run" "repo venv extras" "$@"
((${#POSITIONAL[@]} + ${#EXTRA_ARGS[@]} == 0)) || die "unknown argument ${POSITIONAL[0]:-${EXTRA_ARGS[0]}} (see --help)"

[[ -f "${REPO}/setup.py" ]] || ((DRY_RUN)) || { echo "${LAUNCH_NAME}: no setup.py in ${REPO}" >&2; exit 1; }

if ((DRY_RUN)) || ! python3 -m venv --help >/dev/null 2>&1; then
  # TPU VM images ship python3 without the venv module.
  run sudo apt-get -qq update
  run sudo apt-get -qq install -y python3-venv
fi
if ((DRY_RUN)) || [[ ! -x "${VENV}/bin/python" ]]; then
  run python3 -m venv "$VENV"
fi

stamp="${VENV}/.electra_jax_setup_stamp"
want="${EXTRAS} $( ( cat "${REPO}/setup.py" 2>/dev/null || true) | sha256sum | cut -d' ' -f1)"
if ((DRY_RUN)) || [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  run "${VENV}/bin/pip" install -q -U pip
  run "${VENV}/bin/pip" install -q -e "${REPO}[${EXTRAS}]"
  if ((DRY_RUN)); then echo "# then record '${want}' in ${stamp}"; else echo "$want" >"$stamp"; fi
else
  echo "$(hostname): ${VENV} is up to date"
fi
# Fail here, not at start time, on a broken install. It does not touch the TPU: a pod's chips initialize
# only with every worker taking part, and a running pretrain holds them.
run "${VENV}/bin/python" -c "import jax, electra_jax; print('electra_jax ready, jax', jax.__version__)"
