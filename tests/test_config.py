"""Configs against the original's published hyperparameters (ELECTRA_REFERENCE.md sections 2.1 and 2.2) and the
validation every entry point relies on (one error naming the field, the value and the fix)."""

import re

import pytest

from electra_jax import config as config_lib

# Section 2.1 (paper Table 6 / configure_pretraining.py), written out by hand:
# layers, hidden, heads, FFN, embedding, generator width, seq, batch, peak LR, steps, mask_prob, N.
PAPER = {
    "small": (12, 256, 4, 1024, 128, 64, 128, 128, 5e-4, 1_000_000, 0.15, 19),
    "small_plus": (12, 256, 4, 1024, 128, 256, 512, 128, 5e-4, 4_000_000, 0.15, 79),
    "base": (12, 768, 12, 3072, 768, 256, 512, 256, 2e-4, 766_000, 0.15, 79),
    "large": (24, 1024, 16, 4096, 1024, 256, 512, 2048, 2e-4, 400_000, 0.25, 130),
}


@pytest.mark.parametrize("size", sorted(PAPER))
def test_pretraining_sizes_equal_the_published_table(size):
    config = config_lib.load(f"configs/pretrain.py:{size}")
    m, o = config.model, config.objective
    got = (m.num_layers, m.hidden_size, m.num_heads, m.intermediate_size, m.embedding_size, m.generator_hidden_size,
           config.data.max_seq_length, config.train.batch_size, config.optim.learning_rate, config.train.steps,
           o.mask_prob, o.max_predictions_per_seq)
    assert got == PAPER[size]
    # Shared by every size: warmup, weight decay, Adam without bias correction, clip, lambda, temperature, dropout.
    opt = config.optim
    adam = (opt.adam_b1, opt.adam_b2, opt.adam_eps)
    assert (opt.warmup_steps, opt.weight_decay, adam) == (10000, 0.01, (0.9, 0.999, 1e-6))
    assert (opt.bias_correction, opt.clip_norm, opt.lr_decay_power, opt.end_learning_rate) == (False, 1.0, 1.0, 0.0)
    assert (o.gen_weight, o.disc_weight, o.temperature, o.disallow_correct) == (1.0, 50.0, 1.0, False)
    assert (o.mask_token_prob, o.random_token_prob) == (0.85, 0.0)  # ELECTRA: no random-token branch
    assert (m.hidden_dropout, m.attention_dropout, m.vocab_size) == (0.1, 0.1, 30522)
    assert m.generator_num_layers == m.num_layers  # generator layers = L


def test_max_predictions_is_the_original_formula():
    # N = int((mask_prob + 0.005) * S): 0.155 * 128 = 19.84 -> 19, 0.155 * 64 = 9.92 -> 9, 0.255 * 512 -> 130.
    assert [config_lib.max_predictions_per_seq(p, s) for p, s in ((0.15, 128), (0.15, 64), (0.25, 512))] == [19, 9, 130]
    short = config_lib.load("configs/pretrain.py:small", {"data.max_seq_length": 64})
    assert short.objective.max_predictions_per_seq == 9


def test_fast_option_and_derived_fields():
    fast = config_lib.load("configs/pretrain.py:base,fast").model
    assert (fast.dtype, fast.attention, fast.scan_layers) == ("bfloat16", "cudnn", False)
    assert config_lib.load("configs/pretrain.py:large,fast").model.scan_layers  # 24 unrolled layers compile for minutes
    faithful = config_lib.load("configs/pretrain.py:base").model
    assert (faithful.dtype, faithful.attention) == ("float32", "xla")
    # 30522 padded to the next multiple of 128 (sharding) is 30592; the padding never reaches a logit.
    assert faithful.padded_vocab_size == 30592
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['faster'\]"):
        config_lib.load("configs/pretrain.py:base,faster")


@pytest.mark.parametrize("size,lr,decay", [("small", 3e-4, 0.8), ("base", 1e-4, 0.8), ("large", 5e-5, 0.9)])
def test_finetuning_recipe_equals_the_published_one(size, lr, decay):
    """Section 2.2: LR 3e-4 / 1e-4 / 5e-5 and layer-wise decay 0.8 / 0.8 / 0.9, 10% warmup, batch 32."""
    config = config_lib.load(f"configs/finetune.py:sst2,{size}")
    assert (config.optim.learning_rate, config.optim.layerwise_lr_decay) == (lr, decay)
    assert (config.optim.warmup_proportion, config.train.batch_size, config.optim.weight_decay) == (0.1, 32, 0.01)
    epochs = {name: config_lib.load(f"configs/finetune.py:{name},{size}").train.epochs
              for name in ("sst2", "rte", "stsb", "squad_v1")}
    assert epochs == {"sst2": 3, "rte": 10, "stsb": 10, "squad_v1": 2}
    lengths = {name: config_lib.load(f"configs/finetune.py:{name},{size}").data.max_seq_length
               for name in ("sst2", "squad_v2", "chunk")}
    assert lengths == {"sst2": 128, "squad_v2": 512, "chunk": 256}


def test_errors_name_the_field_and_the_fix():
    cases = [
        ({"model.num_heads": 3}, config_lib.ConfigError, r"config.model.num_heads = 3: hidden_size 128 is not "
                                                        r"divisible by num_heads 3"),
        ({"model.generator_hidden_fraction": 1.5}, config_lib.ConfigError, "generator_hidden_fraction"),
        ({"model.hiden_size": 3}, config_lib.ConfigError, "unknown config field 'model.hiden_size'"),
        ({"model.attention": "flashy"}, config_lib.ConfigError, r"model.attention = 'flashy': must be one of"),
        ({"model.dropout_prng": "philox"}, config_lib.ConfigError, "model.dropout_prng"),
        ({"data.max_seq_length": 7}, config_lib.ConfigError, "data.max_seq_length = 7: must be an integer >= 8"),
        ({"data.max_seq_length": 1024}, config_lib.ConfigError, "exceeds model.max_position_embeddings = 512"),
        ({"objective.kind": "bert"}, config_lib.ConfigError, "objective.kind"),
        ({"objective.mask_prob": 0.0}, config_lib.ConfigError, r"objective.mask_prob = 0.0: must be in \(0, 1\)"),
        ({"optim.learning_rate": -1.0}, config_lib.ConfigError, "optim.learning_rate = -1.0: must be positive"),
        ({"train.batch_size": 0}, config_lib.ConfigError, "train.batch_size = 0: must be a positive integer"),
        ({"mesh.data": 0}, config_lib.ConfigError, r"mesh.data = 0: must be a positive integer or -1"),
        ({"mesh.fsdp": -1}, config_lib.ConfigError, "at most one axis may be -1"),
        ({"sharding.rules": "zero3"}, config_lib.ConfigError, "sharding.rules"),
        ({"nosection.x": 1}, config_lib.ConfigError, "no section 'nosection'"),
    ]
    for overrides, error, pattern in cases:
        with pytest.raises(error, match=pattern):
            config_lib.load("configs/pretrain.py:tiny", overrides)
    with pytest.raises(ValueError, match="unknown pre-training size 'huge'"):
        config_lib.load("configs/pretrain.py:huge")
    with pytest.raises(config_lib.ConfigError, match="config file 'configs/nothing.py' not found"):
        config_lib.load("configs/nothing.py:tiny")
    with pytest.raises(config_lib.ConfigError, match="unknown fine-tuning task 'sst3'"):
        config_lib.load("configs/finetune.py:sst3")


@pytest.mark.parametrize("spec,field,value,why", [
    ("pretrain.py:tiny", "train.log_every", 0, "must be a positive integer"),  # was a ZeroDivisionError at step 1
    ("pretrain.py:tiny", "train.eval_steps", 0, "must be a positive integer"),
    ("pretrain.py:tiny", "train.eval_every", -5, r"must be an integer >= 0 \(0 = no eval"),
    ("pretrain.py:tiny", "train.progress", "bars", r"must be one of \['auto', 'bar', 'log'\]"),
    ("pretrain.py:tiny", "checkpoint.every_steps", 0, "must be a positive integer"),  # was: a save every step
    ("pretrain.py:tiny", "optim.adam_b1", 1.5, r"must be in \[0, 1\)"),
    ("pretrain.py:tiny", "optim.adam_b2", 1.0, r"must be in \[0, 1\)"),
    ("pretrain.py:tiny", "optim.clip_norm", -1.0, r"must be >= 0 \(0 = off\)"),
    ("pretrain.py:tiny", "optim.weight_decay", -0.01, r"must be >= 0 \(0 = off\)"),
    ("pretrain.py:tiny", "objective.disc_weight", -1.0, "must be >= 0"),
    ("finetune.py:sst2,tiny", "train.epochs", 0, "must be a positive integer"),
    ("finetune.py:sst2,tiny", "checkpoint.every_steps", -1, r"must be an integer >= 0 \(0 = only at the end"),
])
def test_out_of_range_values_fail_at_load_naming_the_field(spec, field, value, why):
    """Values that used to pass and fail (or misbehave) only after the compile."""
    with pytest.raises(config_lib.ConfigError, match=rf"config\.{re.escape(field)} = {re.escape(repr(value))}: {why}"):
        config_lib.load(f"configs/{spec}", {field: value})


def test_the_zero_values_with_a_meaning_still_load():
    assert config_lib.load("configs/pretrain.py:tiny", {"train.eval_every": 0, "optim.clip_norm": 0.0,
                                                        "optim.weight_decay": 0.0, "objective.disc_weight": 0.0})
    assert config_lib.load("configs/finetune.py:sst2,tiny", {"checkpoint.every_steps": 0})


def test_finalize_rederives_after_overrides():
    """A changed width re-derives the generator (width // 64 heads, 4x FFN) and the prediction slots."""
    config = config_lib.load("configs/pretrain.py:small", {"model.hidden_size": 512, "model.num_heads": 8,
                                                           "data.max_seq_length": 256})
    m = config.model
    assert (m.generator_hidden_size, m.generator_num_heads, m.generator_intermediate_size) == (128, 2, 512)
    assert config.objective.max_predictions_per_seq == 39  # int(0.155 * 256)
    assert config_lib.special_ids(config) == {"pad_id": 0, "unk_id": 100, "cls_id": 101, "sep_id": 102,
                                              "mask_id": 103}  # the BERT uncased vocabulary's
