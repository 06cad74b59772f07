"""FLOP counts against the paper's published table, a hand count, and XLA's own count of the compiled step."""

import jax
import jax.numpy as jnp
import pytest

from electra_jax import config as config_lib
from electra_jax import flops, modeling, objective

# ELECTRA_REFERENCE.md section 6.1: the output of the original flops_computation.py, 4 significant digits.
PUBLISHED = {
    "electra_small": 1.294e18, "bert_small": 1.419e18, "electra_base": 6.425e19, "bert_base": 6.428e19,
    "bert_large": 1.917e20, "electra_400k": 7.118e20, "electra_1.75M": 3.114e21, "roberta": 3.187e21,
    "xlnet": 3.857e21, "albert": 3.114e22, "gpt": 3.969e19, "elmo": 3.411e18, "t5_11b": 4.582e22,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_original_counter_reproduces_the_published_table(name):
    assert float(f"{flops.original_flops(name):.4g}") == PUBLISHED[name]


def test_unknown_original_model_is_named():
    with pytest.raises(ValueError, match="electra_small"):
        flops.original_flops("electra_huge")


def test_small_step_matches_a_hand_count():
    config = config_lib.load("configs/pretrain.py:small")
    batch, seq = 128, 128
    tokens = batch * seq
    # Discriminator: 12 layers of H=256, I=1024; embedding projection 128 -> 256.
    disc_layer = 8 * 256**2 + 4 * 256 * 1024 + 4 * 128 * 256
    disc = 12 * disc_layer + 2 * 128 * 256
    # Generator: 12 layers of Hg=64, Ig=256; projection 128 -> 64.
    gen_layer = 8 * 64**2 + 4 * 64 * 256 + 4 * 128 * 64
    gen = 12 * gen_layer + 2 * 128 * 64
    disc_head = 2 * 256**2 + 2 * 256
    # Generator head at int(0.155 * 128) = 19 gathered slots: dense 64 -> 128, then the 30522-row table.
    gen_head = 19 * (2 * 64 * 128 + 2 * 128 * 30522)
    expected = 3 * (tokens * (disc + gen + disc_head) + batch * gen_head)
    assert flops.model_flops_per_step(config, batch, seq) == pytest.approx(expected, rel=1e-12)


def test_mlm_step_counts_one_encoder_and_the_head():
    config = config_lib.load("configs/pretrain.py:small", {"objective.kind": "mlm"})
    batch, seq = 4, 128
    encoder = 12 * (8 * 256**2 + 4 * 256 * 1024 + 4 * 128 * 256) + 2 * 128 * 256
    head = 19 * (2 * 256 * 128 + 2 * 128 * 30522)
    assert flops.model_flops_per_step(config, batch, seq) == pytest.approx(3 * (batch * seq * encoder + batch * head))


def test_electric_step_counts_two_towers_and_the_cloze_head_at_every_position():
    config = config_lib.load("configs/pretrain.py:small", {"objective.kind": "electric"})
    batch, seq = 128, 128
    tokens = batch * seq
    disc = 12 * (8 * 256**2 + 4 * 256 * 1024 + 4 * 128 * 256) + 2 * 128 * 256
    # Each tower: 12 layers of Hg=64, Ig=256 over all 128 positions, its own projection 128 -> 64.
    tower = 12 * (8 * 64**2 + 4 * 64 * 256 + 4 * 128 * 64) + 2 * 128 * 64
    disc_head = 2 * 256**2 + 2 * 256
    # The cloze head at every position: dense from both towers (2 x 64) -> 128, then the 30522-row table.
    cloze_head = 2 * 128 * 128 + 2 * 128 * 30522
    expected = 3 * tokens * (disc + 2 * tower + disc_head + cloze_head)
    assert flops.model_flops_per_step(config, batch, seq) == pytest.approx(expected, rel=1e-12)
    # GDES changes no matmul: the same count as tied sharing.
    tied = config_lib.load("configs/pretrain.py:small")
    gdes = config_lib.load("configs/pretrain.py:small", {"model.embedding_sharing": "gdes"})
    assert flops.model_flops_per_step(gdes, batch, seq) == flops.model_flops_per_step(tied, batch, seq)


def test_slots_follow_the_benchmarked_sequence_length():
    config = config_lib.load("configs/pretrain.py:small")  # configured for 128 (19 slots)
    at_512 = flops.model_flops_per_step(config, 1, 512)
    explicit = config_lib.load("configs/pretrain.py:small", {"data.max_seq_length": 512})
    assert explicit.objective.max_predictions_per_seq == 79
    assert at_512 == flops.model_flops_per_step(explicit, 1, 512)


@pytest.mark.parametrize("kind", ["electra", "mlm", "electric"])
def test_formula_agrees_with_xla_count_of_the_compiled_step(kind):
    """XLA's cost analysis of the real gradient computation counts every op; matmuls dominate at width 256."""
    config = config_lib.load("configs/pretrain.py:tiny", {
        "model.num_layers": 2, "model.hidden_size": 256, "model.num_heads": 4, "model.intermediate_size": 1024,
        "model.embedding_size": 128, "model.vocab_size": 1024, "objective.kind": kind})
    batch, seq = 8, 128
    model = modeling.build_model(config)
    params = jax.eval_shape(lambda: modeling.init_params(config, jax.random.key(0)))
    inputs = {k: jax.ShapeDtypeStruct((batch, seq), jnp.int32) for k in ("input_ids", "input_mask", "segment_ids")}

    def grads(p, b, rng):
        return jax.grad(lambda q: objective.pretrain_loss(q, b, rng, model=model, config=config)[0])(p)

    analysis = jax.jit(grads).lower(params, inputs, jax.random.key(0)).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    counted = flops.model_flops_per_step(config, batch, seq)
    # XLA also counts elementwise work (softmax, GELU, LayerNorm, dropout) the formula leaves out.
    assert 1.0 <= analysis["flops"] / counted < 1.10
