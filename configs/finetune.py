"""Fine-tuning configs: `--config=configs/finetune.py:TASK[,SIZE]`.

TASK in cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, squad_v1, squad_v2, ner, chunk; SIZE (tiny, small,
small_plus, base, large; default small) picks the model when training from scratch. With `--init`, the
checkpoint's model config decides the sizes, and SIZE only picks the recipe (learning rate, decay).

The recipe is the original's (ELECTRA_REFERENCE.md section 2.2): layer-wise LR decay 0.8 (0.9 for large),
LR 3e-4 small / 1e-4 base / 5e-5 large, 3 epochs (10 for RTE and STS-B, 2 for SQuAD), 10% warmup,
weight decay 0.01, batch 32, sequence 128 (512 SQuAD, 256 chunking).
"""

import dataclasses

import ml_collections

from electra_jax.config import REPO_ROOT, ConfigError, load, model_defaults, optim_defaults
from electra_jax.finetune.tasks import TASKS


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One model size's fine-tuning recipe."""

    learning_rate: float
    layerwise_lr_decay: float


RECIPES = {
    "tiny": Recipe(learning_rate=1e-3, layerwise_lr_decay=0.8),
    "small": Recipe(learning_rate=3e-4, layerwise_lr_decay=0.8),
    "small_plus": Recipe(learning_rate=3e-4, layerwise_lr_decay=0.8),
    "base": Recipe(learning_rate=1e-4, layerwise_lr_decay=0.8),
    "large": Recipe(learning_rate=5e-5, layerwise_lr_decay=0.9),
}


def _model_for_size(size: str) -> ml_collections.ConfigDict:
    pretrain = load(str(REPO_ROOT / "configs" / "pretrain.py") + ":" + size)
    model = model_defaults()
    for key in model.keys():
        model[key] = pretrain.model[key]
    model.scan_layers = False  # fine-tuning keeps layer_i (the layout checkpoints and layer_depth use)
    model.padded_vocab_size = 0
    return model


def get_config(arg: str = "sst2"):
    task, _, size = arg.partition(",")
    size = size or "small"
    if task not in TASKS:
        raise ConfigError(f"unknown fine-tuning task {task!r} in configs/finetune.py:{arg}; "
                          f"choose one of {', '.join(TASKS)}")
    if size not in RECIPES:
        raise ConfigError(f"unknown model size {size!r} in configs/finetune.py:{arg}; "
                          f"choose one of {', '.join(RECIPES)}")
    spec = TASKS[task]  # a registered electra_jax.finetune Task: its epochs and sequence length
    recipe = RECIPES[size]

    config = ml_collections.ConfigDict()
    config.task = task
    config.size = size
    config.model = _model_for_size(size)

    optim = config.optim = optim_defaults()
    optim.learning_rate = recipe.learning_rate
    optim.warmup_proportion = 0.1  # warmup = 0.1 * total steps, total = floor(n / batch) * epochs
    optim.warmup_steps = 0  # derived from warmup_proportion at run time
    optim.layerwise_lr_decay = recipe.layerwise_lr_decay

    train = config.train = ml_collections.ConfigDict()
    train.epochs = spec.epochs
    train.batch_size = 32
    train.eval_batch_size = 32
    train.seed = 0
    # Several seeds: `seeds` lists them ("0,1,2"), else num_trials runs seeds seed .. seed+num_trials-1.
    # results.json then holds each seed and the median (what the original README reports).
    train.seeds = ""
    train.num_trials = 1
    # Train the seeds together: one state stacked over them, the steps vmapped (one launch sequence per step for
    # all; K times the state's memory). Each seed computes what it would alone, up to the rounding of batched
    # matmuls. For small models on GPUs, where a step is bound by kernel launches, not FLOPs.
    train.vmap_seeds = False
    train.max_train_examples = 0  # 0 = all; caps the training set (first N after a seeded shuffle)
    train.max_eval_examples = 0  # 0 = all
    train.log_every = 50
    train.progress = "auto"  # "bar", "log" or "auto"
    # results.json "best": the final epoch's dev metrics (what the original reports); True picks the
    # epoch with the best first metric instead (dev-set selection, which the paper does not do).
    train.select_best_epoch = False

    data = config.data = ml_collections.ConfigDict()
    data.dir = ""  # the task's files in their standard layout (a GLUE task folder or the glue_data root)
    data.tfds = False  # read a TFDS dataset prepared under tfds_data_dir instead (never downloaded)
    data.tfds_data_dir = ""
    data.vocab = ""  # vocab.txt or .model; else from the --init checkpoint or HF folder
    data.lower_case = True
    # WordPiece: None strips accents exactly when lower-casing (the original); True/False as HF's strip_accents
    data.strip_accents = ml_collections.config_dict.placeholder(bool)
    data.max_seq_length = spec.max_seq_length
    data.double_unordered = True  # MRPC and STS-B training pairs doubled with A/B swapped
    data.doc_stride = 128
    data.max_query_length = 64
    data.tag_scheme = "BIOES"  # tags are trained as BIOES (scored as chunks either way)

    qa = config.qa = ml_collections.ConfigDict()
    qa.n_best_size = 20
    qa.max_answer_length = 30
    qa.beam_size = 20
    qa.answerable_weight = 0.5
    qa.na_threshold = -2.75  # predict no answer when the answerable logit exceeds this (SQuAD 2.0)
    qa.hidden_units = 512

    ckpt = config.checkpoint = ml_collections.ConfigDict()
    ckpt.init = ""  # same as --init
    ckpt.save_final = True
    ckpt.every_epoch = True  # checkpoint at the end of every epoch (False: only every_steps and on SIGTERM)
    ckpt.every_steps = 0  # also checkpoint every N steps (0: only at the end of every epoch, and on SIGTERM)
    ckpt.keep = 1
    ckpt.async_save = True

    # Data-parallel over every device and host by default, as pre-training.
    config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    config.sharding = ml_collections.ConfigDict({"rules": "dp"})
    return config
