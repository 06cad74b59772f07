"""The networks against hand counts of the original architecture and against HF transformers PyTorch."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_reference import random_hf_pair

from electra_jax import config as config_lib
from electra_jax import convert, modeling, objective


def hand_count_encoder(vocab, emb, hidden, layers, inter, max_pos=512, types=2, with_embeddings=True):
    """Parameters of the original BERT-style encoder, counted from the variable shapes in modeling.py."""
    count = 0
    if with_embeddings:
        count += (vocab + max_pos + types) * emb + 2 * emb  # tables + embedding LayerNorm
    if emb != hidden:
        count += emb * hidden + hidden  # embeddings_project
    per_layer = 4 * (hidden * hidden + hidden) + 2 * hidden  # q, k, v, attention output + LayerNorm
    per_layer += hidden * inter + inter + inter * hidden + hidden + 2 * hidden  # FFN + LayerNorm
    return count + layers * per_layer


@pytest.mark.parametrize("size,disc_expected", [
    ("small", 13_483_008), ("small_plus", 13_483_008), ("base", 108_891_648), ("large", 334_092_288)])
def test_param_counts_match_hand_count(size, disc_expected):
    config = config_lib.load(f"configs/pretrain.py:{size}")
    m = config.model
    shapes = modeling.param_shapes(config)
    disc = {k: shapes[k] for k in ("embeddings", "discriminator")}
    hand = hand_count_encoder(m.vocab_size, m.embedding_size, m.hidden_size, m.num_layers, m.intermediate_size)
    assert modeling.count_params(disc, config) == hand == disc_expected
    head = m.hidden_size * m.hidden_size + m.hidden_size + m.hidden_size + 1
    assert modeling.count_params(shapes["discriminator_predictions"], config) == head
    gen_hidden = m.generator_hidden_size
    gen_encoder = hand_count_encoder(m.vocab_size, m.embedding_size, gen_hidden, m.num_layers, 4 * gen_hidden,
                                     with_embeddings=False)
    gen_head = gen_hidden * m.embedding_size + m.embedding_size + 2 * m.embedding_size + m.vocab_size
    gen = {k: shapes[k] for k in ("generator", "generator_predictions")}
    assert modeling.count_params(gen, config) == gen_encoder + gen_head


def test_the_module_takes_the_config_model_section_as_the_contract_writes_it():
    """ElectraPretrainer(config.model) builds the Small networks (hand count) and matches init_params' tree."""
    config = config_lib.load("configs/pretrain.py:small")
    model = modeling.ElectraPretrainer(config.model)
    assert isinstance(model.cfg, modeling.ModelConfig) and not model.cfg.mlm_only
    ids = jnp.zeros((1, 8), jnp.int32)
    shapes = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), ids, ids, jnp.ones_like(ids),
                                     jnp.zeros((1, 2), jnp.int32))["params"])
    disc = {k: shapes[k] for k in ("embeddings", "discriminator")}
    assert modeling.count_params(disc, config) == 13_483_008
    assert (jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(modeling.param_shapes(config)))


def test_generator_sizes_follow_the_original():
    small = config_lib.load("configs/pretrain.py:small").model
    assert (small.generator_hidden_size, small.generator_num_heads, small.generator_intermediate_size) == (64, 1, 256)
    base = config_lib.load("configs/pretrain.py:base").model
    assert (base.generator_hidden_size, base.generator_num_heads, base.generator_num_layers) == (256, 4, 12)
    large = config_lib.load("configs/pretrain.py:large").model
    assert (large.generator_hidden_size, large.generator_num_layers) == (256, 24)
    # Small encoder-only generator params excluding the shared embeddings: README/reference 0.61M.
    enc = hand_count_encoder(30522, 128, 64, 12, 256, with_embeddings=False)
    assert round(enc / 1e6, 2) == 0.61


def test_initializers_follow_the_original():
    config = config_lib.load("configs/pretrain.py:tiny")
    params = modeling.init_params(config, jax.random.key(0))
    table = np.asarray(params["embeddings"]["word_embeddings"])
    assert np.abs(table).max() <= 0.04 + 1e-6  # truncated at 2 sigma
    assert abs(table.std() - 0.0176) < 0.001  # the std of a normal(0.02) truncated at ±2σ
    proj = np.asarray(params["discriminator"]["embeddings_project"]["kernel"])
    limit = math.sqrt(6 / sum(proj.shape))  # Glorot uniform
    assert np.abs(proj).max() <= limit and np.abs(proj).max() > 0.9 * limit
    assert np.all(np.asarray(params["discriminator"]["layer_0"]["output_LayerNorm"]["scale"]) == 1)
    assert np.all(np.asarray(params["generator_predictions"]["output_bias"]) == 0)


def test_dropout_prng_changes_only_the_dropout_masks():
    """rbg dropout: the same objective without dropout (eval), different masks in training, same masking."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30522, (4, 32))
    ids[:, 0], ids[:, -1] = 101, 102
    batch = {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}
    out = {}
    for prng in ("threefry", "rbg"):
        config = config_lib.load("configs/pretrain.py:tiny", {"model.dropout_prng": prng, "data.max_seq_length": 32})
        params = modeling.init_params(config, jax.random.key(0))
        model = modeling.build_model(config)
        out[prng] = [objective.pretrain_loss(params, batch, jax.random.key(1), model=model, config=config,
                                             train=train)[1] for train in (False, True)]
    (eval_t, train_t), (eval_r, train_r) = out["threefry"], out["rbg"]
    for name in ("loss", "mlm_loss", "disc_loss"):
        assert float(eval_t[name]) == float(eval_r[name])
        assert np.isfinite(float(train_r[name]))
    assert float(train_t["mlm_loss"]) != float(train_r["mlm_loss"])


def test_initial_losses_are_near_chance():
    config = config_lib.load("configs/pretrain.py:tiny")
    params = modeling.init_params(config, jax.random.key(0))
    model = modeling.build_model(config)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, config.model.vocab_size, (16, 128))
    ids[:, 0], ids[:, -1] = 101, 102
    batch = {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}
    _, metrics = objective.pretrain_loss(params, batch, jax.random.key(1), model=model, config=config, train=False)
    assert abs(float(metrics["mlm_loss"]) - math.log(config.model.vocab_size)) < 0.1
    assert abs(float(metrics["disc_loss"]) - math.log(2)) < 0.1
    assert abs(float(metrics["loss"]) - (math.log(30522) + 50 * math.log(2))) < 5


# ------------------------------------------------------------------------------------------------
# Parity with HF transformers PyTorch (skips without torch/transformers).

HF_CASES = [
    # (embedding, hidden, layers, heads, inter, gen hidden, gen heads, gen inter, vocab, untied)
    (32, 48, 2, 3, 80, 24, 2, 40, 1000, False),  # E != H, 3 heads, vocab needs padding
    (48, 48, 3, 4, 96, 48, 4, 96, 515, False),  # generator fraction 1.0, E == H
    (40, 96, 2, 6, 128, 32, 2, 64, 700, False),  # generator 1/3
    (32, 64, 2, 2, 128, 16, 1, 64, 300, True),  # generator 1/4, untied generator embeddings
]


def _inputs(vocab, batch=3, seq=24, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    ids = ids * mask
    segments = np.zeros_like(ids)
    segments[:, 10:] = 1
    return ids, segments * mask, mask


@pytest.mark.parametrize("case", HF_CASES)
def test_forward_matches_hf_pytorch(case):
    torch = pytest.importorskip("torch")
    disc, gen, disc_cfg, gen_cfg = random_hf_pair(case, seed=len(str(case)))
    params, config = convert.from_hf_state_dicts(disc.state_dict(), gen.state_dict(), disc_cfg.to_dict(),
                                                 gen_cfg.to_dict())
    ids, segments, mask = _inputs(case[-2])
    with torch.no_grad():
        t_ids, t_seg, t_mask = (torch.tensor(a) for a in (ids, segments, mask))
        hf_disc = disc(input_ids=t_ids, token_type_ids=t_seg, attention_mask=t_mask).logits.numpy()
        hf_gen = gen(input_ids=t_ids, token_type_ids=t_seg, attention_mask=t_mask).logits.numpy()
    ours_disc = np.asarray(modeling.discriminator_logits(params, config, ids, segments, mask))
    ours_gen = np.asarray(modeling.generator_logits(params, config, ids, segments, mask))
    assert ours_gen.shape == hf_gen.shape  # padding of the vocabulary is invisible
    valid = mask.astype(bool)
    np.testing.assert_allclose(ours_disc[valid], hf_disc[valid], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours_gen[valid], hf_gen[valid], atol=1e-5, rtol=1e-5)

    # And back: every tensor survives the round trip exactly.
    disc_sd, gen_sd, _ = convert.to_hf_state_dicts(params, config)
    for name, tensor in disc.state_dict().items():
        np.testing.assert_array_equal(disc_sd[name], tensor.numpy(), err_msg=name)
    for name, tensor in gen.state_dict().items():
        np.testing.assert_array_equal(gen_sd[name], tensor.numpy(), err_msg=name)


def test_scanned_layers_equal_unrolled_layers():
    config = config_lib.load("configs/pretrain.py:tiny")
    params = modeling.init_params(config, jax.random.key(0))
    scanned = config_lib.load("configs/pretrain.py:tiny", {"model.scan_layers": True, "model.remat": "full"})
    stacked = modeling.stack_layers(params)
    assert jax.tree_util.tree_structure(stacked) == jax.tree_util.tree_structure(modeling.param_shapes(scanned))
    ids, segments, mask = _inputs(config.model.vocab_size)
    np.testing.assert_allclose(modeling.discriminator_logits(stacked, scanned, ids, segments, mask),
                               modeling.discriminator_logits(params, config, ids, segments, mask), atol=1e-5)
    back = modeling.unstack_layers(stacked)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), back, params))


def test_bfloat16_compute_stays_close_to_float32():
    config = config_lib.load("configs/pretrain.py:tiny")
    bf16 = config_lib.load("configs/pretrain.py:tiny", {"model.dtype": "bfloat16"})
    params = modeling.init_params(config, jax.random.key(0))
    ids, segments, mask = _inputs(config.model.vocab_size)
    a = np.asarray(modeling.discriminator_logits(params, config, ids, segments, mask))
    b = np.asarray(modeling.discriminator_logits(params, bf16, ids, segments, mask))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() < 0.05 * max(1.0, np.abs(a).max())
