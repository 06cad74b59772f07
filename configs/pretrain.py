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

from electra_jax.config import base_pretrain_config

SIZES = {
        # name: (layers, hidden, embedding, generator fraction, seq, batch, lr, steps, mask_prob)
        "tiny": (2, 128, 64, 0.5, 128, 32, 5e-4, 1000, 0.15),
        "small": (12, 256, 128, 0.25, 128, 128, 5e-4, 1_000_000, 0.15),
        "small_plus": (12, 256, 128, 1.0, 512, 128, 5e-4, 4_000_000, 0.15),
        "base": (12, 768, 768, 1 / 3, 512, 256, 2e-4, 766_000, 0.15),
        "large": (24, 1024, 1024, 0.25, 512, 2048, 2e-4, 400_000, 0.25),
}


OPTIONS = ("fast",)


def get_config(arg: str = "small"):
    size, *options = arg.split(",")
    if size not in SIZES:
        raise ValueError(f"unknown pre-training size {size!r}; choose one of {sorted(SIZES)}")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in configs/pretrain.py:{arg}; choose from {list(OPTIONS)}")
    layers, hidden, embedding, gen_fraction, seq, batch, lr, steps, mask_prob = SIZES[size]
    config = base_pretrain_config()
    config.size = size
    m = config.model
    m.num_layers = layers
    m.hidden_size = hidden
    m.embedding_size = embedding
    m.num_heads = max(1, hidden // 64)
    m.intermediate_size = 4 * hidden
    m.generator_hidden_fraction = gen_fraction
    config.data.max_seq_length = seq
    config.train.batch_size = batch
    config.train.steps = steps
    config.optim.learning_rate = lr
    config.objective.mask_prob = mask_prob
    if size == "tiny":
        m.num_heads = 2
        m.intermediate_size = 256
        config.optim.warmup_steps = 100
        config.train.log_every = 50
        config.train.eval_every = 500
        config.checkpoint.every_steps = 500
    if size == "large":
        m.scan_layers = True
    if "fast" in options:
        m.dtype = "bfloat16"
        m.attention = "cudnn"
        m.scan_layers = size == "large"
    return config
