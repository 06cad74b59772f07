#!/usr/bin/env bash
# Speed runs on one NVIDIA GPU, all in one session so the ratios mean something: HF transformers PyTorch
# (eager) and electra_jax on the same shapes, Small (128 x 128), Base (64 x 512) and Large (32 x 512).
#
#   bash benchmarks/run_gpu.sh            # results in $OUT (or benchmarks/results/)
#
# Needs no network and no TensorFlow: ml-collections comes from benchmarks/wheels/. Every run has its own
# timeout, and the whole script keeps inside BUDGET_S seconds (default 540, under a 10-minute limit): runs
# that no longer fit are recorded as skipped. Writes OUT/<date>-<card>.json (one row per run, see
# benchmarks/make_table.py) and OUT/run.log (every run's stderr), and prints the markdown table last.
set -u -o pipefail
export PYTHONUNBUFFERED=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$REPO/benchmarks/results}"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-540}"
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-3}"
ONLY="${ONLY:-}"  # a regular expression: run only the runs whose names match (e.g. ONLY='small')
ATTN="${ATTN:-cudnn}"
# SMOKE=1 checks the plumbing on a machine without a GPU: tiny model, plain attention, the Small pair only
# (SMOKE_ATTN=cudnn exercises the fallback to XLA attention instead: cuDNN attention fails off GPU).
if [[ -n "${SMOKE:-}" ]]; then
    STEPS=2 WARMUP=1 ATTN="${SMOKE_ATTN:-xla}" ONLY="${ONLY:-^(hf|jax)_small(_xla)?$}"
fi
mkdir -p "$OUT"
SCRATCH="$(mktemp -d)"
LOG="$OUT/run.log"
: >"$LOG"
START=$SECONDS
ORDER=0

# ml-collections is not in the GPU image: install the carried pure-Python wheel into a scratch folder.
if [[ -n "${FORCE_WHEEL:-}" ]] || ! "$PY" -c "import ml_collections" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index --no-compile --no-cache-dir --target "$SCRATCH/site" \
        "$REPO"/benchmarks/wheels/ml_collections-*.whl || { echo "could not install ml-collections"; exit 1; }
    export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# Reruns on a still-warm machine reuse compiled steps.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/electra_jax_compile_cache}"
export TF_CPP_MIN_LOG_LEVEL=1

GPU_NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
case "$GPU_NAME" in
    *H200*) CARD=h200 ;;
    *H100*) CARD=h100 ;;
    "") CARD=nogpu ;;
    *) CARD="$(echo "$GPU_NAME" | tr 'A-Z' 'a-z' | tr -cs 'a-z0-9' '-' | sed 's/-$//')" ;;
esac
DATE="$(date -u +%Y-%m-%d)"
RESULT="$OUT/$DATE-$CARD${RUN_TAG:+-$RUN_TAG}.json"  # RUN_TAG tells apart several runs of one day
{
    echo "card: $GPU_NAME ($CARD), date $DATE, budget ${BUDGET_S}s, $STEPS timed steps"
    nvidia-smi 2>&1 | head -n 15
    "$PY" -c "import jax, flax, optax, torch, transformers; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" 2>&1
} | tee -a "$LOG"

# run NAME IMPL VARIANT LIMIT_S COMMAND...: one benchmark in its own timeout; never stops the script.
run() {
    local name=$1 impl=$2 variant=$3 limit=$4
    shift 4
    ORDER=$((ORDER + 1))
    if [[ -n "$ONLY" && ! "$name" =~ $ONLY ]]; then
        return 0
    fi
    local left=$((BUDGET_S - (SECONDS - START)))
    if ((left < 45)); then
        echo "=== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
        printf '{"order": %d, "run": "%s", "impl": "%s", "variant": "%s", "rc": 125, "skipped": true}\n' \
            "$ORDER" "$name" "$impl" "$variant" >"$SCRATCH/$name.meta"
        return 0
    fi
    ((limit > left)) && limit=$left
    echo "=== $name (limit ${limit}s, $((SECONDS - START))s elapsed): $*" | tee -a "$LOG"
    local begin=$SECONDS
    timeout -k 15 "$limit" "$@" >"$SCRATCH/$name.out" 2>"$SCRATCH/$name.err"
    local rc=$?
    cat "$SCRATCH/$name.err" >>"$LOG"
    tail -n 1 "$SCRATCH/$name.out" | tee -a "$LOG"
    ((rc != 0)) && echo "!!! $name failed with exit status $rc" | tee -a "$LOG" && tail -n 5 "$SCRATCH/$name.err"
    printf '{"order": %d, "run": "%s", "impl": "%s", "variant": "%s", "rc": %d, "wall_s": %d, "limit_s": %d}\n' \
        "$ORDER" "$name" "$impl" "$variant" "$rc" "$((SECONDS - begin))" "$limit" >"$SCRATCH/$name.meta"
    # Rewritten after every run, so a run cut off by an outer time limit still leaves every finished row.
    "$PY" "$REPO/benchmarks/make_table.py" collect --raw "$SCRATCH" --out "$RESULT" --card "$CARD" --date "$DATE" \
        >/dev/null 2>&1
    return $rc
}

HF=("$PY" "$REPO/benchmarks/hf_pytorch_baseline.py" --steps="$STEPS" --warmup="$WARMUP" --dtype=bfloat16)
JX=("$PY" -m electra_jax.benchmark --steps="$STEPS" --warmup="$WARMUP" --dtype=bfloat16)
SMALL=(--config=configs/pretrain.py:small --batch_size=128 --seq_len=128)
BASE=(--config=configs/pretrain.py:base --batch_size=64 --seq_len=512)
LARGE=(--config=configs/pretrain.py:large --batch_size=32 --seq_len=512)
if [[ -n "${SMOKE:-}" ]]; then
    SMALL=(--config=configs/pretrain.py:tiny --batch_size=2 --seq_len=32)
    BASE=("${SMALL[@]}") LARGE=("${SMALL[@]}")
fi

# Where the Base step's time goes (a trace of 3 steps after the timed ones), with the trace and compiled HLO.
save_profile() {
    [[ -d "$PROFILE" ]] || return 0
    "$PY" -m electra_jax.profile_summary "$PROFILE" --steps=3 --json "$OUT/profile_base.json" \
        >"$OUT/profile_base.md" 2>>"$LOG" || echo "!!! profile summary failed" | tee -a "$LOG"
    local trace
    trace="$(find "$PROFILE" -name '*.trace.json.gz' | head -n 1)"
    [[ -n "$trace" ]] && cp "$trace" "$OUT/profile_base.trace.json.gz"
    [[ -f "$PROFILE/step_hlo.txt.gz" ]] && cp "$PROFILE/step_hlo.txt.gz" "$OUT/profile_base_hlo.txt.gz"
    head -n 14 "$OUT/profile_base.md" | tee -a "$LOG"
}

cd "$REPO" || exit 1
# Most important first: one HF / electra_jax pair per size with the settings docs/SPEED.md recommends for GPU
# (configs/pretrain.py:SIZE,fast: bf16, cuDNN attention, unrolled layers below Large), then the variants that explain
# the differences (measured 2026-11-26 on an H200: scanning costs Base 22%; rbg dropout bought nothing).
# Unrolled Large compiles for minutes: run it alone with ONLY='^(hf_large|jax_large_unrolled)$'.
PROFILE="$SCRATCH/profile"
run hf_small hf_pytorch_eager "bf16 autocast, sdpa" 90 "${HF[@]}" "${SMALL[@]}" --variant="bf16 autocast, sdpa"
if ! run jax_small electra_jax "bf16, $ATTN, unrolled" 150 "${JX[@]}" "${SMALL[@]}" --attention="$ATTN" \
    --noscan_layers --variant="bf16, $ATTN, unrolled" && [[ "$ATTN" == cudnn ]]; then
    ATTN=xla  # cuDNN attention failed here: measure everything else with plain attention rather than nothing
    echo "!!! falling back to --attention=xla for the remaining runs" | tee -a "$LOG"
    run jax_small_xla electra_jax "bf16, xla, unrolled" 150 "${JX[@]}" "${SMALL[@]}" --attention=xla \
        --noscan_layers --variant="bf16, xla, unrolled"
fi
run hf_base hf_pytorch_eager "bf16 autocast, sdpa" 90 "${HF[@]}" "${BASE[@]}" --variant="bf16 autocast, sdpa"
run jax_base electra_jax "bf16, $ATTN, unrolled" 150 "${JX[@]}" "${BASE[@]}" --attention="$ATTN" --noscan_layers \
    --profile_dir="$PROFILE" --variant="bf16, $ATTN, unrolled"
save_profile
run hf_large hf_pytorch_eager "bf16 autocast, sdpa" 90 "${HF[@]}" "${LARGE[@]}" --variant="bf16 autocast, sdpa"
run jax_large electra_jax "bf16, $ATTN, scan" 180 "${JX[@]}" "${LARGE[@]}" --attention="$ATTN" --scan_layers \
    --remat=none --variant="bf16, $ATTN, scan"
# Extras, as the budget allows.
run jax_base_scan electra_jax "bf16, $ATTN, scan" 120 "${JX[@]}" "${BASE[@]}" --attention="$ATTN" --scan_layers \
    --variant="bf16, $ATTN, scan"
run jax_base_xla electra_jax "bf16, xla attention, unrolled" 150 "${JX[@]}" "${BASE[@]}" --attention=xla \
    --noscan_layers --variant="bf16, xla attention, unrolled"
run jax_large_unrolled electra_jax "bf16, $ATTN, unrolled" 300 "${JX[@]}" "${LARGE[@]}" \
    --attention="$ATTN" --noscan_layers --remat=none --variant="bf16, $ATTN, unrolled"

"$PY" "$REPO/benchmarks/make_table.py" collect --raw "$SCRATCH" --out "$RESULT" --card "$CARD" --date "$DATE" \
    | tee -a "$LOG"
echo "total ${SECONDS}s"
"$PY" "$REPO/benchmarks/make_table.py" table "$RESULT"
