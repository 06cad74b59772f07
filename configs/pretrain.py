"""Pre-training configs: `--config=configs/pretrain.py:SIZE`, SIZE in tiny, small, small_plus, base, large.

Values follow ELECTRA_REFERENCE.md section 2.1 (the paper's Table 6 and the original
configure_pretraining.py). `small` is the paper's ELECTRA-Small (generator 1/4, seq 128, batch 128);
`small_plus` the released Small++ (generator 1.0, seq 512); `tiny` a few-layer model for tests and the
CPU demo.
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


def get_config(size: str = "small"):
    if size not in SIZES:
        raise ValueError(f"unknown pre-training size {size!r}; choose one of {sorted(SIZES)}")
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
    return config
