"""Fine-tuning: GLUE, SQuAD and tagging tasks on the pre-training system.

    python -m electra_jax.finetune --config=configs/finetune.py:sst2 --init=CKPT_OR_HF_DIR --workdir=DIR \\
        --config.data.dir=glue_data/SST-2

Modules:
  task      the Task protocol (read, featurize, head, loss, eval_outputs, score) and TaskData
  tasks     the registry of tasks (`get_task`, `register`)
  glue, squad, tagging   one module per task family (readers, featurization, head, loss, scoring)
  scoring   the metrics (accuracy, F1, MCC, Pearson/Spearman, SQuAD v1.1/v2.0, span F1)
  model     FinetuneModel (embeddings + discriminator encoder + task head) and loading pre-trained weights
  train     FinetuneProgram on train_state.Trainer and `train_and_evaluate(config, workdir, init=None)`
  __main__  the absl command line

`--init` takes anything `electra_jax.checkpoint_formats.open_checkpoint` reads (an electra_jax checkpoint or
params export, an HF ELECTRA folder, the output folder of `convert to_hf`, an original TF checkpoint).
Writes DIR/results.json (per-epoch dev metrics, `best`, and for several seeds one entry per seed plus the
median), metrics.jsonl and TensorBoard events, checkpoints for resuming, the final parameters under DIR/final,
and for SQuAD the dev predictions.
"""

from electra_jax.finetune.model import FinetuneModel, apply_checkpoint_model, merge_pretrained
from electra_jax.finetune.task import DataFormatError, Task, TaskData
from electra_jax.finetune.tasks import TASKS, get_task, register
from electra_jax.finetune.train import FinetuneProgram, TaskSession, seeds_of, train_and_evaluate
from electra_jax.safeguards import NonFiniteLossError

__all__ = ["TASKS", "DataFormatError", "FinetuneModel", "FinetuneProgram", "NonFiniteLossError", "Task", "TaskData",
           "TaskSession",
           "apply_checkpoint_model", "get_task", "merge_pretrained", "register", "seeds_of", "train_and_evaluate"]
