"""Pre-training configs: `--config=configs/pretrain.py:SIZE[,fast]`, SIZE in tiny, small, small_plus, base, large.

Values follow ELECTRA_REFERENCE.md section 2.1 (the paper's Table 6 and the original
configure_pretraining.py). `small` is the paper's ELECTRA-Small (generator 1/4, seq 128, batch 128);
`small_plus` the released Small++ (generator 1.0, seq 512); `tiny` a few-layer model for tests and the
CPU demo.

`,fast` adds the GPU speed settings measured on an H200 (docs/SPEED.md; benchmarks/results/2026-11-26-h200*.json):
bf16 compute (float32 parameters), cuDNN attention (no attention-probability dropout) and, below Large, unrolled
layers (scanning cost Base 22% of its step; 24 unrolled Large layers compile for minutes). Without it the
original's settings run.

Every size takes the objective and sharing switches as overrides; the defaults are ELECTRA's. Two are
departures from the ELECTRA default (electra_jax/config.py documents them; docs/TRAINING.md has CPU runs):
  --config.objective.kind=electric          Electric (the original's electric_objective): a two-tower cloze
                                            generator and an NCE energy discriminator; needs model.attention=xla,
                                            so not with `,fast`
  --config.model.embedding_sharing=gdes     DeBERTa-v3's gradient-disentangled embedding sharing
(`--config.model.embedding_sharing=untied` is the original's untied_generator_embeddings.)
"""

import dataclasses

from electra_jax.config import base_pretrain_config


@dataclasses.dataclass(frozen=True)
class Size:
    """One model size and its pre-training recipe (0 or None: the default of base_pretrain_config)."""

    num_layers: int
    hidden_size: int
    embedding_size: int
    generator_hidden_fraction: float
    max_seq_length: int
    batch_size: int
    learning_rate: float
    steps: int
    mask_prob: float = 0.15
    num_heads: int = 0  # 0: hidden_size // 64, as the original
    intermediate_size: int = 0  # 0: 4 * hidden_size
    warmup_steps: int | None = None
    scan_layers: bool = False
    log_every: int | None = None
    eval_every: int | None = None
    checkpoint_every: int | None = None


SIZES = {
    "tiny": Size(num_layers=2, hidden_size=128, embedding_size=64, generator_hidden_fraction=0.5, max_seq_length=128,
                 batch_size=32, learning_rate=5e-4, steps=1000, num_heads=2, intermediate_size=256, warmup_steps=100,
                 log_every=50, eval_every=500, checkpoint_every=500),
    "small": Size(num_layers=12, hidden_size=256, embedding_size=128, generator_hidden_fraction=0.25,
                  max_seq_length=128, batch_size=128, learning_rate=5e-4, steps=1_000_000),
    "small_plus": Size(num_layers=12, hidden_size=256, embedding_size=128, generator_hidden_fraction=1.0,
                       max_seq_length=512, batch_size=128, learning_rate=5e-4, steps=4_000_000),
    "base": Size(num_layers=12, hidden_size=768, embedding_size=768, generator_hidden_fraction=1 / 3,
                 max_seq_length=512, batch_size=256, learning_rate=2e-4, steps=766_000),
    "large": Size(num_layers=24, hidden_size=1024, embedding_size=1024, generator_hidden_fraction=0.25,
                  max_seq_length=512, batch_size=2048, learning_rate=2e-4, steps=400_000, mask_prob=0.25,
                  scan_layers=True),
}

OPTIONS = ("fast",)


def get_config(arg: str = "small"):
    size_name, *options = arg.split(",")
    if size_name not in SIZES:
        raise ValueError(f"unknown pre-training size {size_name!r}; choose one of {sorted(SIZES)}")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in configs/pretrain.py:{arg}; choose from {list(OPTIONS)}")
    size = SIZES[size_name]
    config = base_pretrain_config()
    config.size = size_name
    model = config.model
    model.num_layers = size.num_layers
    model.hidden_size = size.hidden_size
    model.embedding_size = size.embedding_size
    model.num_heads = size.num_heads or max(1, size.hidden_size // 64)
    model.intermediate_size = size.intermediate_size or 4 * size.hidden_size
    model.generator_hidden_fraction = size.generator_hidden_fraction
    model.scan_layers = size.scan_layers
    config.data.max_seq_length = size.max_seq_length
    config.train.batch_size = size.batch_size
    config.train.steps = size.steps
    config.optim.learning_rate = size.learning_rate
    config.objective.mask_prob = size.mask_prob
    for section, field, value in (("optim", "warmup_steps", size.warmup_steps), ("train", "log_every", size.log_every),
                                  ("train", "eval_every", size.eval_every),
                                  ("checkpoint", "every_steps", size.checkpoint_every)):
        if value is not None:
            config[section][field] = value
    if "fast" in options:
        model.dtype = "bfloat16"
        model.attention = "cudnn"
        model.scan_layers = size_name == "large"
    return config
