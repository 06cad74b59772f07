#!/usr/bin/env bash
# The evidence run on one GPU: compute_efficiency --budget=gpu (ELECTRA-Small vs BERT-Small at 1e16 FLOPs each,
# fine-tuned on five GLUE tasks) from the carried bundle, its report in $OUT as each result lands.
#
#   python -m electra_jax.experiments.bundle pack --corpus_dir=CORPUS --vocab=VOCAB --glue_dir=GLUE \
#       --output_dir=runs/evidence_bundle                      # here, once (runs/ is git-ignored)
#   bash benchmarks/run_evidence_gpu.sh                        # there: device run, carry=["runs/evidence_bundle"]
#
# Needs no network and no TensorFlow: ml-collections comes from benchmarks/wheels/. The script ends within LIMIT_S
# seconds (default 570, inside a 10-minute call), the experiment's fine-tuning deadline 55 s before that (the control
# and top compute points first; earlier points only while they fit); it rewrites its report after every fine-tuning
# result, so a run cut short still returns what it finished. Writes to $OUT (at most 8 files come back): compute_efficiency.json
# (the rows), .md (the table), .png (the plot), .summary.json, stages.json, plan.json, bundle.json and run.log.
# SMOKE=1 rehearses it on a CPU: the toy budget, the same bundle, wheel and TF-free path.
set -u -o pipefail
export PYTHONUNBUFFERED=1

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$REPO/runs/evidence_out}"
PY="${PYTHON:-python3}"
BUNDLE="${BUNDLE:-$REPO/runs/evidence_bundle}"
BUDGET="${BUDGET:-gpu}"
LIMIT_S="${LIMIT_S:-570}"
FLAGS=()
if [[ -n "${SMOKE:-}" ]]; then  # the toy budget, fine-tuned by a worker process as the gpu budget's are
    BUDGET=toy LIMIT_S="${LIMIT_S_SMOKE:-600}" FLAGS=(--finetune_workers=1)
fi
mkdir -p "$OUT"
SCRATCH="$(mktemp -d)"
WORK="${WORK:-$SCRATCH/work}"
LOG="$OUT/run.log"
: >"$LOG"
START=$SECONDS

# ml-collections is not in the GPU image: install the carried pure-Python wheel into a scratch folder.
if [[ -n "${FORCE_WHEEL:-}" ]] || ! "$PY" -c "import ml_collections" 2>/dev/null; then
    "$PY" -m pip install -q --no-deps --no-index --no-compile --no-cache-dir --target "$SCRATCH/site" \
        "$REPO"/benchmarks/wheels/ml_collections-*.whl || { echo "could not install ml-collections" | tee -a "$LOG"
        exit 1; }
    export PYTHONPATH="$SCRATCH/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=1
cd "$REPO" || exit 1

{
    # The device copy of the tree has no .git: pass COMMIT=$(git rev-parse --short HEAD) from the checkout.
    echo "evidence run: budget $BUDGET, limit ${LIMIT_S}s, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -n 2
    "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1
    "$PY" -c "import tensorflow" >/dev/null 2>&1 && echo "tensorflow: importable (not used)" || echo "tensorflow: absent"
} | tee -a "$LOG"

[[ -f "$BUNDLE/bundle.json" ]] || { echo "no bundle at $BUNDLE (pack one: see the top of this script)" | tee -a "$LOG"; exit 1; }
cp "$BUNDLE/bundle.json" "$OUT/bundle.json"
INPUTS="$("$PY" -m electra_jax.experiments.bundle unpack --bundle="$BUNDLE" --output_dir="$SCRATCH/inputs" 2>>"$LOG" | tail -n 1)"
echo "inputs: $INPUTS" | tee -a "$LOG"
GLUE="$SCRATCH/inputs/glue"
[[ -d "$GLUE" ]] || { echo "unpacking the bundle failed" | tee -a "$LOG"; exit 1; }

# LIMIT_S counts from the start of this script: the set-up above (wheel, imports, unpacking) comes out of it, and
# so do the 15 s the experiment gets to stop after its TERM, so the files below are copied inside the call.
LEFT=$((LIMIT_S - (SECONDS - START) - 15))
echo "=== compute_efficiency --budget=$BUDGET ($((SECONDS - START))s elapsed, ${LEFT}s left)" | tee -a "$LOG"
timeout -k 15 "$LEFT" "$PY" -m electra_jax.experiments.compute_efficiency --budget="$BUDGET" \
    --output_dir="$WORK" --corpus_dir="$BUNDLE/corpus" --vocab="$BUNDLE/vocab.txt" --glue_dir="$GLUE" \
    --results="$OUT/compute_efficiency.json" --deadline_s=$((LEFT - 40)) "${FLAGS[@]}" "$@" 2>&1 | tee -a "$LOG" | grep -E "stage |plan:|FLOPs: average|Error"
RC=${PIPESTATUS[0]}
for name in stages.json plan.json; do
    [[ -f "$WORK/$name" ]] && cp "$WORK/$name" "$OUT/$name"
done
rm -f "$OUT"/.*.tmp  # a copy a kill cut short (only 8 files come back)
for log in "$WORK"/logs/finetune_*.log; do
    [[ -f "$log" ]] && { echo "--- $(basename "$log") (last 40 lines)"; tail -n 40 "$log"; } >>"$LOG"
done
echo "compute_efficiency exit status $RC after $((SECONDS - START))s" | tee -a "$LOG"
[[ -f "$OUT/compute_efficiency.md" ]] && head -n 20 "$OUT/compute_efficiency.md"
exit "$RC"
