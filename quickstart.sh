#!/usr/bin/env bash
# electra_jax quickstart: from a fresh clone to a pre-trained, evaluated, exported tiny ELECTRA on CPU.
#
#   bash quickstart.sh [TEXT_GLOB [HELD_OUT_GLOB]]
#
# Creates .venv (if missing), installs electra_jax, then: builds a corpus (your TEXT_GLOB, or the
# docstrings of this Python's standard library), trains a WordPiece vocabulary, builds pre-training
# records, pre-trains the tiny model with a progress bar, evaluates it on held-out records (the default
# corpus holds some out; with your own text, HELD_OUT_GLOB, else the training text itself), exports
# it to HF transformers format, shows which tokens the discriminator flags in a sample sentence, plots
# the curves, and prints where everything went. About ten minutes on 2 CPU cores.
#
# Environment knobs: STEPS (default 1000), WORKDIR (default runs/quickstart), PYTHON (default python3),
# SKIP_INSTALL=1 to reuse the current environment.
set -euo pipefail
cd "$(dirname "$0")"

STEPS="${STEPS:-1000}"
WORKDIR="${WORKDIR:-runs/quickstart}"
PYTHON="${PYTHON:-python3}"
INPUT="${1:-}"
HELD_OUT="${2:-}"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}" TF_CPP_MIN_LOG_LEVEL=3

step() { printf '\n==> %s\n' "$*"; }

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
  step "Setting up .venv and installing electra_jax"
  [[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[plot]" safetensors
  PY=.venv/bin/python
else
  PY="$PYTHON"
fi

mkdir -p "$WORKDIR"
if [[ -z "$INPUT" ]]; then
  step "Writing a corpus from the standard library's docstrings (no download)"
  "$PY" -m electra_jax.demo_corpus --output_dir="$WORKDIR/corpus"
  TRAIN_GLOB="$WORKDIR/corpus/train_*.txt"
  EVAL_GLOB="$WORKDIR/corpus/eval.txt"
else
  TRAIN_GLOB="$INPUT"
  EVAL_GLOB="${HELD_OUT:-$INPUT}"
  if [[ -z "$HELD_OUT" ]]; then
    echo "note: no HELD_OUT_GLOB given, so the eval runs on the training text (its metrics are training metrics);" \
         "pass a second glob of held-out text for a real held-out eval"
  fi
fi

step "Training an 8000-token WordPiece vocabulary"
"$PY" -m electra_jax.build_vocab --input="$TRAIN_GLOB" --vocab_size=8000 --kind=wordpiece \
  --output="$WORKDIR/vocab.txt"

step "Building pre-training records (sequence length 128)"
"$PY" -m electra_jax.build_data --input="$TRAIN_GLOB" --vocab="$WORKDIR/vocab.txt" \
  --output_dir="$WORKDIR/records/train" --max_seq_length=128
"$PY" -m electra_jax.build_data --input="$EVAL_GLOB" --vocab="$WORKDIR/vocab.txt" \
  --output_dir="$WORKDIR/records/eval" --max_seq_length=128 --num_shards=1

step "Pre-training the tiny ELECTRA for $STEPS steps"
"$PY" -m electra_jax.pretrain --config=configs/pretrain.py:tiny --workdir="$WORKDIR/pretrain" \
  --config.data.train_files="$WORKDIR/records/train/*.tfrecord*" \
  --config.data.eval_files="$WORKDIR/records/eval/*.tfrecord*" \
  --config.train.steps="$STEPS" --config.train.eval_every="$STEPS"

step "Exporting to HF transformers format"
"$PY" -m electra_jax.convert to_hf --checkpoint="$WORKDIR/pretrain" --output_dir="$WORKDIR/hf"

SENTENCE="the function returns a new list of the strings in the given order ."
FAKE="the function returns a green list of the strings in the given order ."
step "What the discriminator flags (probability each token was replaced)"
echo "original: $SENTENCE"
"$PY" -m electra_jax.predict detect --checkpoint="$WORKDIR/pretrain" --text="$SENTENCE"
echo "corrupted ('new' -> 'green'): $FAKE"
"$PY" -m electra_jax.predict detect --checkpoint="$WORKDIR/pretrain" --text="$FAKE"

step "Plotting the curves"
"$PY" -m electra_jax.plot --workdir="$WORKDIR/pretrain" || echo "(plotting needs matplotlib: pip install matplotlib)"

step "Done. Everything is under $WORKDIR:"
cat <<EOF
  corpus/                 the text used (one sentence per line, blank line between documents)
  vocab.txt               the WordPiece vocabulary
  records/{train,eval}/   TFRecords in the original ELECTRA format + metadata.json
  pretrain/               checkpoints/, TensorBoard events, metrics.jsonl, plots/
  hf/discriminator, hf/generator   load with transformers: ElectraForPreTraining.from_pretrained(...)
Next: make test   (the test suite), README.md for real data, GPUs, TPU pods and fine-tuning.
EOF
