"""The compute-efficiency experiment's scales (budgets), its pre-training objectives and its GLUE tasks.

A budget fixes everything that sets the scale of one run; an objective is a name for a set of pre-training config
overrides. Both are checked before any stage runs (`objective_overrides`, `check_objectives`), so a typo or a field
this version of the config does not have fails at once with the field's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from electra_jax.config import REPO_ROOT

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"  # ../shared/data beside the checkout (vocabularies, GLUE, text)
CONTROL = "none"  # the no-pre-training control's objective name in the result rows

# name -> pre-training config overrides. ELECTRA is the reference: every other objective gets the steps of the
# same pre-training FLOPs. `electric` and `electra_gdes` use objective.kind=electric and
# model.embedding_sharing=gdes; a name mapped to a field the config lacks fails at once, naming the field.
OBJECTIVES: dict[str, dict[str, Any]] = {
    "electra": {"objective.kind": "electra"},
    "mlm": {"objective.kind": "mlm"},  # BERT-style masked LM (80/10/10) on the discriminator-sized encoder
    # Electric's two-tower generator has causal masks in both directions, which only XLA attention implements:
    # it runs with XLA attention whatever the budget's speed settings give the others.
    "electric": {"objective.kind": "electric", "model.attention": "xla"},
    "electra_gdes": {"objective.kind": "electra", "model.embedding_sharing": "gdes"},
}
DEFAULT_OBJECTIVES = ("electra", "mlm")
REFERENCE_OBJECTIVE = "electra"

# The paper's GLUE dev metric of each task the experiment fine-tunes (Spearman for STS-B).
PAPER_METRICS = {"cola": "mcc", "sst2": "accuracy", "mrpc": "accuracy", "stsb": "spearman", "rte": "accuracy"}


def _experiment_tasks() -> dict[str, tuple[str, str, str]]:
    """task -> (GLUE folder, headline metric, display name), the folder and name from the task registry."""
    from electra_jax.finetune.tasks import get_task

    return {name: (get_task(name).glue_dir, metric, get_task(name).glue_dir) for name, metric in PAPER_METRICS.items()}


TASKS = _experiment_tasks()


@dataclasses.dataclass(frozen=True)
class Budget:
    """Everything that sets the scale of one run of the experiment."""

    name: str
    # corpus and vocabulary
    corpus_max_chars: int  # 0 = every document; else about this many characters, spread over the sources
    vocab_size: int
    # pre-training: configs/pretrain.py:SIZE (",fast" added when fast) with these overrides, every objective
    pretrain_size: str
    model: dict[str, Any]
    seq_len: int
    batch_size: int
    electra_steps: int  # ELECTRA's steps; every other objective gets the steps of the same FLOPs
    warmup_steps: int
    num_points: int  # checkpoints at 1/n, 2/n, ..., n/n of the pre-training FLOPs
    eval_steps: int  # pre-training eval batches at every compute point (held-out records); 0 = no eval
    # fine-tuning: configs/finetune.py:TASK,finetune_size with these caps
    finetune_size: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]  # at the top compute point and for the control
    max_train_examples: int  # 0 = all
    max_eval_examples: int  # 0 = all
    epochs: int  # 0 = the task's default (3; RTE and STS-B 10)
    finetune_seq_len: int
    finetune_batch_size: int
    build_processes: int = 1
    early_seeds: tuple[int, ...] = ()  # at the earlier compute points; () = seeds
    records_format: str = "tfrecord"  # build_data --format / config.data.format: tfrecord or numpy (no TensorFlow)
    vocab: str = "corpus"  # corpus: WordPiece trained on the corpus; bert: the published BERT uncased vocab.txt
    # GPU speed settings: pre-training with configs/pretrain.py:SIZE,fast (bf16, cuDNN attention, which has no
    # attention-probability dropout: a departure from the original), fine-tuning in bf16 with XLA attention.
    fast: bool = False
    finetune_workers: int = 0  # 0: fine-tune after pre-training, in this process; N: N processes during it
    # A model's seeds fine-tune together, vmapped (config.train.vmap_seeds): one launch sequence per step for all of
    # them, which is what a small model's step on a GPU costs; the same numbers up to rounding.
    vmap_seeds: bool = False


# The fields that only change fine-tuning: a rerun in the same --output_dir may change them (the corpus, records and
# pre-training checkpoints are reused; fine-tuning results go to finetune/<finetune_tag>/), every other field must
# match the run on disk.
FINETUNE_FIELDS = ("finetune_size", "tasks", "seeds", "early_seeds", "max_train_examples", "max_eval_examples",
                   "epochs", "finetune_seq_len", "finetune_batch_size", "finetune_workers", "vmap_seeds")

_ALL_TASKS = ("sst2", "cola", "mrpc", "stsb", "rte")
BUDGETS = {
    # Every stage, a few seconds each: a tiny slice of the corpus, a one-layer model, one task, two seeds vmapped;
    # numpy records, so the rehearsal runs with no TensorFlow at all (the GPU machine's case).
    "toy": Budget(
        name="toy", corpus_max_chars=120_000, vocab_size=600, pretrain_size="tiny",
        model={"num_layers": 1, "hidden_size": 64, "embedding_size": 32, "intermediate_size": 128, "num_heads": 1},
        seq_len=32, batch_size=8, electra_steps=4, warmup_steps=1, num_points=2, eval_steps=0,
        finetune_size="tiny", tasks=("rte",), seeds=(0, 1), max_train_examples=32, max_eval_examples=32, epochs=1,
        finetune_seq_len=32, finetune_batch_size=8, records_format="numpy", vmap_seeds=True),
    # The real experiment on a 2-core CPU: the tiny model (2 layers, hidden 128, generator 1/2) at seq 128, then
    # ELECTRA-Small's fine-tuning recipe (LR 3e-4; our tiny recipe's 1e-3 stalls briefly pre-trained starts) on 3,000
    # examples x 3 epochs. Measured: 18-33 + 15-21 minutes of pre-training, 55 of fine-tuning (45 jobs of 3 seeds)
    # (docs/EVIDENCE.md has the per-stage times).
    "cpu": Budget(
        name="cpu", corpus_max_chars=0, vocab_size=8192, pretrain_size="tiny", model={},
        seq_len=128, batch_size=32, electra_steps=3000, warmup_steps=150, num_points=4, eval_steps=10,
        finetune_size="small", tasks=_ALL_TASKS, seeds=(0, 1, 2),
        max_train_examples=3000, max_eval_examples=1000, epochs=3, finetune_seq_len=64, finetune_batch_size=32,
        build_processes=2),
    # Ten minutes on one H200 (docs/EVIDENCE.md, "What `--budget=gpu` runs"): ELECTRA-Small against BERT-Small (the same
    # 12-layer discriminator trained as a masked LM) at 1.03e16 FLOPs each, the paper's batch 128 x seq 128 and
    # published BERT uncased vocabulary, bf16 + cuDNN attention; checkpoints at 1/3, 2/3 and 3/3. Fine-tuning: the cpu
    # budget's protocol (ELECTRA-Small's recipe, at most 3,000 examples x 3 epochs per task) at seq 128 on the full
    # dev sets, 3 seeds for every model, vmapped (one launch sequence per step for the three: on a launch-bound GPU
    # about the cost of one), in one process per task during pre-training. No pre-training eval pass (it would cost
    # a compile per objective). Predicted 7.2-7.8 minutes depending on the fine-tuning step's speed, which is not
    # measured on a GPU yet (docs/EVIDENCE.md): with --deadline_s the control and top points come first, so a slow
    # run loses earlier points, not the comparison.
    "gpu": Budget(
        name="gpu", corpus_max_chars=0, vocab_size=30522, pretrain_size="small", model={},
        seq_len=128, batch_size=128, electra_steps=9000, warmup_steps=500, num_points=3, eval_steps=0,
        finetune_size="small", tasks=_ALL_TASKS, seeds=(0, 1, 2),
        max_train_examples=3000, max_eval_examples=0, epochs=3, finetune_seq_len=128, finetune_batch_size=32,
        build_processes=8, records_format="numpy", vocab="bert", fast=True, finetune_workers=5, vmap_seeds=True),
}


def seeds_for(budget: Budget, top: bool) -> tuple[int, ...]:
    """Fine-tuning seeds of a model: the budget's seeds at the top compute point and for the control."""
    return budget.seeds if top or not budget.early_seeds else budget.early_seeds


def check_objectives(names: Sequence[str]) -> tuple[str, ...]:
    """The objective names, checked: known, none repeated; ValueError listing the choices."""
    names = tuple(names)
    unknown = [name for name in names if name not in OBJECTIVES]
    if unknown:
        raise ValueError(f"--objectives: unknown {unknown}; choose from {list(OBJECTIVES)}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--objectives={','.join(names)}: give each objective once, at least one")
    return names


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`field=value` strings to a dict, values as Python literals where they parse (1e-3, True, 'x'), else text."""
    import ast

    overrides = {}
    for item in items:
        field, sep, text = item.partition("=")
        if not sep or not field.strip():
            raise ValueError(f"--overrides: {item!r} is not field=value (e.g. model.attention=splash)")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides[field.strip()] = value
    return overrides
