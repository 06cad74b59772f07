#!/usr/bin/env bash
# The whole speed table on one GPU in one call: HF PyTorch and electra_jax timed in the same processes.
#
#   COMMIT=<git rev-parse HEAD> DIRTY=0 bash benchmarks/run_gpu.sh        # headline pass, then faithful, ~8 min
#   SMOKE=1 bash benchmarks/run_gpu.sh                                    # the same plumbing on CPU, tiny shapes
#
# Sets up the environment (the carried ml-collections wheel, compile caches, JAX sharing the card with torch),
# then benchmarks/gpu_session.py runs one benchmarks/same_call.py driver per (pass, size) within BUDGET_S and
# writes the results file; the markdown table is printed last. docs/SPEED.md explains the method and the
# device-time budget of each stage.
#
# Writes under OUT (default benchmarks/results/; at most 8 files come back from the GPU machine):
#   <date>-<card>[-RUN_TAG].json   every row of the call        run.log    everything the drivers printed
#   table.md                       the generated tables          hf_profile_base.md   torch.profiler summary
#   profile_base.md / .json        jax.profiler summary          profile_base.trace.json.gz, profile_base_hlo.txt.gz
#
# Knobs: BUDGET_S (545, counted from this script's start), PASSES ("headline,faithful"; "flash" adds the
# faithful work with electra_jax's Pallas flash attention), SIZES ("small,base,large"), XLA_FLAG_SETS (extra
# Base runs, off by default; names in gpu_session.py), HF_COMPILE_GRAPH=1 (every driver that compiles HF also
# times the compiled step captured in one CUDA graph; about 15-20 s a size), RUN_TAG (a suffix for a second call of
# the day), PYTHON, COMMIT and DIRTY (the GPU machine's copy of the tree has no .git).
set -u -o pipefail
export PYTHONUNBUFFERED=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$REPO/benchmarks/results}"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-545}"
PASSES="${PASSES:-headline,faithful}"
SIZES="${SIZES:-small,base,large}"
XLA_FLAG_SETS="${XLA_FLAG_SETS:-}"
HF_COMPILE_GRAPH="${HF_COMPILE_GRAPH:-}"
SESSION_ARGS=()
if [[ -n "${SMOKE:-}" ]]; then
    SIZES="${SMOKE_SIZES:-small}"
    PASSES="${SMOKE_PASSES:-headline}"
    SESSION_ARGS=(--smoke)
fi
STARTED_AT="$(date +%s)"  # BUDGET_S counts from here: the set-up below comes out of it
mkdir -p "$OUT"
SCRATCH="$(mktemp -d)"
LOG="$OUT/run.log"
: >"$LOG"

# ml-collections is not in the GPU image: install the carried pure-Python wheel into a scratch folder.
if [[ -n "${FORCE_WHEEL:-}" ]] || ! "$PY" -c "import ml_collections" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index --no-compile --no-cache-dir --target "$SCRATCH/site" \
        "$REPO"/benchmarks/wheels/ml_collections-*.whl || { echo "could not install ml-collections"; exit 1; }
    export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Reruns on a still-warm machine reuse compiled steps and autotuning (JAX), and compiled graphs (torch).
CACHE="${CACHE_DIR:-/tmp/electra_jax_cache}"
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$CACHE/jax}"
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-$CACHE/inductor}"
# An XLA flag this XLA does not know aborts every JAX process: probe (on the CPU backend, seconds) before using it.
AUTOTUNE_FLAG="--xla_gpu_per_fusion_autotune_cache_dir=$CACHE/xla_autotune"
if [[ -z "${SMOKE:-}" ]] && "$PY" "$REPO/benchmarks/gpu_session.py" --check_flags="$AUTOTUNE_FLAG" >/dev/null 2>&1; then
    export XLA_FLAGS="$AUTOTUNE_FLAG${XLA_FLAGS:+ $XLA_FLAGS}"
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX and torch share the card
export TF_CPP_MIN_LOG_LEVEL=1
export SESSION_COMMAND="BUDGET_S=$BUDGET_S PASSES=$PASSES SIZES=$SIZES XLA_FLAG_SETS=$XLA_FLAG_SETS${HF_COMPILE_GRAPH:+ HF_COMPILE_GRAPH=1}${SMOKE:+ SMOKE=1} bash benchmarks/run_gpu.sh"
[[ -n "$HF_COMPILE_GRAPH" ]] && SESSION_ARGS+=(--hf_compile_graph)

GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
case "$GPU_NAME" in
    *H200*) CARD=h200 ;;
    *H100*) CARD=h100 ;;
    "") CARD=nogpu ;;
    *) CARD="$(echo "$GPU_NAME" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/-$//')" ;;
esac
DATE="$(date -u +%Y-%m-%d)"
RESULT="$OUT/$DATE-$CARD${RUN_TAG:+-$RUN_TAG}.json"
{
    echo "card: $GPU_NAME ($CARD), date $DATE, budget ${BUDGET_S}s, passes $PASSES, sizes $SIZES, commit ${COMMIT:-?}"
    nvidia-smi 2>&1 | head -n 15
    "$PY" -c "import jax, flax, optax, torch, transformers; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1
} | tee -a "$LOG"

cd "$REPO" || exit 1
"$PY" "$REPO/benchmarks/gpu_session.py" --out="$OUT" --result="$RESULT" --scratch="$SCRATCH" --log="$LOG" \
    --budget_s="$BUDGET_S" --passes="$PASSES" --sizes="$SIZES" --flag_sets="$XLA_FLAG_SETS" --card="$CARD" \
    --date="$DATE" --started_at="$STARTED_AT" ${SESSION_ARGS[@]+"${SESSION_ARGS[@]}"}
STATUS=$?
tail -n 3 "$LOG"
"$PY" "$REPO/benchmarks/make_table.py" table "$RESULT" | tee "$OUT/table.md"
exit $STATUS
