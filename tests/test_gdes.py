"""Gradient-disentangled embedding sharing (model.embedding_sharing='gdes') against PyTorch and untied tables.

The reference is DeBERTa-v3's GDES as microsoft/DeBERTa ships it (`apps/tasks/rtd_task.py`, RTDModel with
embedding_sharing='gdes'): before each discriminator forward its embedding weights are replaced by
`generator_weight.detach() + delta`, with the deltas zero-initialised parameters. Here that is done to HF
transformers PyTorch ELECTRA modules and compared with electra_jax's loss and every gradient.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from hf_reference import (assert_grads_close, grads_by_name, imported_config, loss_and_grads, parity_batch,
                          random_hf_pair, same_draws, torch_electra_loss)

from electra_jax import config as config_lib
from electra_jax import convert, modeling, objective

VOCAB, SEQ = 1000, 24
TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


def _tiny(**overrides):
    values = {"model.embedding_sharing": "gdes", "model.vocab_size": 300, "model.num_layers": 2,
              "data.max_seq_length": 16, "model.max_position_embeddings": 16}
    values.update(overrides)
    return config_lib.load("configs/pretrain.py:tiny", values)


def _random(tree, seed, vocab):
    """Every tensor random (deltas and LayerNorms too) so a mis-wired one shows; vocabulary padding stays zero."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    rng = np.random.default_rng(seed)
    out = []
    for path, leaf in leaves:
        value = rng.normal(0, 0.2, leaf.shape).astype(np.float32)
        if "word_embeddings" in jax.tree_util.keystr(path):
            value[vocab:] = 0
        elif "output_bias" in jax.tree_util.keystr(path):
            value[vocab:] = 0
        out.append(value)
    return jax.tree_util.tree_unflatten(treedef, out)


def _batch(seq=16, vocab=300, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(110, vocab, (3, seq))
    mask = np.ones_like(ids)
    mask[1, seq // 2:] = 0
    ids[:, 0] = 101
    ids[np.arange(3), mask.sum(1) - 1] = 102
    segments = np.zeros_like(ids)
    segments[:, seq // 3:] = 1
    return (ids * mask).astype(np.int32), (segments * mask).astype(np.int32), mask.astype(np.int32)


def _disc_loss_fn(config, ids, segments, mask, labels):
    model = modeling.build_model(config)

    def loss(params):
        logits = model.apply({"params": params}, ids, segments, mask, True,
                             method=modeling.ElectraPretrainer.discriminator_logits)
        return objective.disc_loss(logits, labels, mask)[0]

    return loss


def test_discriminator_loss_gives_the_generator_tables_exactly_zero_gradient():
    config = _tiny()
    params = _random(modeling.param_shapes(config), 0, 300)
    ids, segments, mask = _batch()
    labels = (np.random.default_rng(1).random(ids.shape) < 0.3).astype(np.int32)
    grads = jax.jit(jax.grad(_disc_loss_fn(config, ids, segments, mask, labels)))(params)
    for name in TABLES + ("LayerNorm",):
        for leaf in jax.tree_util.tree_leaves(grads["embeddings"][name]):
            assert np.all(np.asarray(leaf) == 0.0), name
    for name in TABLES:
        assert np.abs(np.asarray(grads["discriminator_embeddings"][f"{name}_delta"])).max() > 0, name


def test_deltas_receive_exactly_the_gradient_of_an_untied_discriminator_table():
    """An untied discriminator whose own tables hold E_generator + E_delta (and GDES's LayerNorm) gets, from the
    same discriminator loss, the gradient GDES gives the deltas."""
    gdes = _tiny()
    untied = _tiny(**{"model.embedding_sharing": "untied"})
    params = _random(modeling.param_shapes(gdes), 0, 300)
    ids, segments, mask = _batch()
    labels = (np.random.default_rng(1).random(ids.shape) < 0.3).astype(np.int32)
    gdes_grads = jax.jit(jax.grad(_disc_loss_fn(gdes, ids, segments, mask, labels)))(params)

    own = params["discriminator_embeddings"]
    untied_params = _random(modeling.param_shapes(untied), 5, 300)  # generator values are irrelevant here
    untied_params["discriminator"] = params["discriminator"]
    untied_params["discriminator_predictions"] = params["discriminator_predictions"]
    untied_params["embeddings"] = {name: params["embeddings"][name] + own[f"{name}_delta"] for name in TABLES}
    untied_params["embeddings"]["LayerNorm"] = own["LayerNorm"]
    untied_grads = jax.jit(jax.grad(_disc_loss_fn(untied, ids, segments, mask, labels)))(untied_params)

    for name in TABLES:
        np.testing.assert_allclose(np.asarray(gdes_grads["discriminator_embeddings"][f"{name}_delta"]),
                                   np.asarray(untied_grads["embeddings"][name]), rtol=1e-6, atol=1e-9)
    for leaf in ("scale", "bias"):
        np.testing.assert_allclose(np.asarray(gdes_grads["discriminator_embeddings"]["LayerNorm"][leaf]),
                                   np.asarray(untied_grads["embeddings"]["LayerNorm"][leaf]), rtol=1e-6, atol=1e-9)


def test_deltas_start_at_zero_so_the_discriminator_starts_from_the_generator_tables():
    config = _tiny()
    params = jax.jit(lambda key: modeling.init_params(config, key))(jax.random.key(0))
    for name in TABLES:
        assert np.all(np.asarray(params["discriminator_embeddings"][f"{name}_delta"]) == 0.0)
    axes = modeling.logical_axes(config)["discriminator_embeddings"]
    assert tuple(axes["word_embeddings_delta"]) == ("vocab", "embed_table")
    assert tuple(axes["position_embeddings_delta"]) == (None, "embed_table")


def test_config_switch_and_its_errors():
    assert _tiny(**{"model.embedding_sharing": "tied"}).model.untied_generator_embeddings is False
    # The original's flag stays an alias of embedding_sharing='untied'.
    alias = config_lib.load("configs/pretrain.py:tiny", {"model.untied_generator_embeddings": True})
    assert alias.model.embedding_sharing == "untied" and alias.model.untied_generator_embeddings
    with pytest.raises(config_lib.ConfigError, match=r"model.untied_generator_embeddings.*embedding_sharing"):
        _tiny(**{"model.untied_generator_embeddings": True})
    with pytest.raises(config_lib.ConfigError, match=r"model.embedding_sharing = 'gdes'.*objective.kind='mlm'"):
        _tiny(**{"objective.kind": "mlm"})
    with pytest.raises(config_lib.ConfigError, match=r"model.embedding_sharing = 'shared'.*one of"):
        _tiny(**{"model.embedding_sharing": "shared"})
    # A config saved before the field existed (checkpoints of older runs) reads as the tied default.
    old = config_lib.load("configs/pretrain.py:tiny")
    del old.model["embedding_sharing"]
    assert config_lib.finalize(old).model.embedding_sharing == "tied"


# ---------------------------------------------------------------------------------------------------------
# The whole objective against a PyTorch GDES


def test_gdes_loss_and_gradients_equal_a_pytorch_deberta_style_gdes():
    torch = pytest.importorskip("torch")
    disc, gen, disc_cfg, gen_cfg = random_hf_pair((32, 48, 2, 3, 80, 24, 2, 40, VOCAB, False), seed=9)
    disc_emb, gen_emb = disc.electra.embeddings, gen.electra.embeddings
    gen.generator_lm_head.weight = gen_emb.word_embeddings.weight  # the generator's output layer is tied
    torch.manual_seed(10)
    deltas = {name: torch.nn.Parameter(torch.randn_like(getattr(gen_emb, name).weight) * 0.2) for name in TABLES}
    with torch.no_grad():
        deltas["word_embeddings"][0] = 0.0  # HF's padding row: nn.Embedding(padding_idx=0) never trains it

    # HF -> electra_jax: the generator's block is `embeddings`, the deltas and the discriminator's own LayerNorm
    # are `discriminator_embeddings` (the conversion table maps everything else).
    disc_state = dict(disc.state_dict(), **{f"electra.embeddings.{k}": v for k, v in gen_emb.state_dict().items()})
    params, imported = convert.from_hf_state_dicts(disc_state, gen.state_dict(), disc_cfg.to_dict(),
                                                   gen_cfg.to_dict())
    config = imported_config(imported.model, SEQ, **{"model.embedding_sharing": "gdes"})

    def own_block(tables: dict, layer_norm: dict) -> dict:
        word = np.zeros((config.model.padded_vocab_size, tables["word_embeddings"].shape[1]), np.float32)
        word[:VOCAB] = tables["word_embeddings"]
        return {"word_embeddings_delta": word, "position_embeddings_delta": tables["position_embeddings"],
                "token_type_embeddings_delta": tables["token_type_embeddings"],
                "LayerNorm": {"scale": layer_norm["weight"], "bias": layer_norm["bias"]}}

    params["discriminator_embeddings"] = own_block(
        {k: v.detach().numpy() for k, v in deltas.items()},
        {k: v.detach().numpy() for k, v in disc_emb.LayerNorm.state_dict().items()})
    batch = parity_batch(VOCAB, SEQ)
    rng = jax.random.key(4)
    (loss, metrics), grads = loss_and_grads(params, config, batch, rng)

    # PyTorch: DeBERTa's forward hook, `register_buffer(name, g.weight.detach() + d._weight)` on each table, then
    # the original ELECTRA loss on the same draws.
    for name in TABLES:
        module = getattr(disc_emb, name)
        del module.weight
        module.register_buffer("weight", getattr(gen_emb, name).weight.detach() + deltas[name])
    total, mlm_loss, disc_loss = torch_electra_loss(disc, gen, batch, rng, config)
    total.backward()

    np.testing.assert_allclose(float(metrics["mlm_loss"]), mlm_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["disc_loss"]), disc_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), total.item(), rtol=1e-5)

    gen_grads = grads_by_name(gen)
    disc_grads = dict(grads_by_name(disc), **{f"electra.embeddings.{k}": gen_grads[f"electra.embeddings.{k}"]
                                              for k in gen_emb.state_dict()})
    expected, _ = convert.from_hf_state_dicts(disc_grads, gen_grads, disc_cfg.to_dict(), gen_cfg.to_dict())
    expected["discriminator_embeddings"] = own_block(
        {k: v.grad.numpy() for k, v in deltas.items()},
        {"weight": disc_emb.LayerNorm.weight.grad.numpy(), "bias": disc_emb.LayerNorm.bias.grad.numpy()})
    assert_grads_close(grads, expected)

    # E_generator's gradient is the MLM loss's alone: the same as the gradient of 1 x MLM by itself.
    masked, _ = same_draws(rng, batch, config)
    o, model = config.objective, modeling.build_model(config)

    def mlm_term(p):
        logits = model.apply({"params": p}, masked.input_ids, batch["segment_ids"], batch["input_mask"],
                             masked.positions, True, method=modeling.ElectraPretrainer.generator_logits_at)
        return o.gen_weight * objective.mlm_loss(logits, masked.target_ids, masked.weights)[0]

    mlm_only = jax.grad(mlm_term)(params)
    for name in TABLES:
        np.testing.assert_allclose(np.asarray(grads["embeddings"][name]), np.asarray(mlm_only["embeddings"][name]),
                                   rtol=1e-5, atol=1e-8)


def test_export_merges_the_deltas_and_matches_hf_pytorch():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = _tiny()
    params = _random(modeling.param_shapes(config), 2, 300)
    disc, gen, (disc_cfg, gen_cfg) = convert.to_hf_state_dicts(params, config)
    word = disc["electra.embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(word, params["embeddings"]["word_embeddings"][:300]
                                  + params["discriminator_embeddings"]["word_embeddings_delta"][:300])
    ids, segments, mask = _batch()
    for state, hf_config, cls, ours_fn in (
            (disc, disc_cfg, transformers.ElectraForPreTraining, modeling.discriminator_logits),
            (gen, gen_cfg, transformers.ElectraForMaskedLM, modeling.generator_logits)):
        hf = cls(transformers.ElectraConfig(**hf_config, attn_implementation="eager")).eval()
        hf.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)
        with torch.no_grad():
            theirs = hf(**{name: torch.tensor(a, dtype=torch.long) for name, a in (
                ("input_ids", ids), ("token_type_ids", segments), ("attention_mask", mask))}).logits.numpy()
        ours = np.asarray(ours_fn(params, config, ids, segments, mask))
        valid = mask.astype(bool)
        np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-5, rtol=1e-5, err_msg=cls.__name__)


# ---------------------------------------------------------------------------------------------------------
# Sharding and resume, with Electric's new parameters too


@pytest.mark.slow  # about 2 CPU-minutes: the same models compiled for 1 and 8 devices
def test_sharded_gdes_electric_steps_match_one_device():
    import mini

    overrides = mini.overrides(**{"data.max_seq_length": 16, "train.batch_size": 8, "optim.warmup_steps": 0,
                                  "optim.learning_rate": 1e-3, "objective.kind": "electric",
                                  "model.embedding_sharing": "gdes"})
    proc = subprocess.run([sys.executable, "-c", mini.SHARDED_STEPS, json.dumps(overrides)], cwd=mini.REPO,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    for rules in ("dp", "fsdp", "fsdp_tp"):
        assert out[rules]["losses"] == pytest.approx(out["reference"], rel=2e-5, abs=1e-5), (rules, out)
        assert out[rules]["max_param_diff"] < 2e-5, (rules, out)
    assert 0.124 < out["fsdp"]["max_device_fraction"] < 0.14, out["fsdp"]  # the deltas are split too


@pytest.mark.slow  # two short pre-training runs: minutes on a busy 2-core machine
def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """A run to step 4, and the same run resumed from its step-2 checkpoint: the same parameters, bit for bit."""
    import shutil

    from electra_jax import checkpoints, pretrain

    overrides = {"objective.kind": "electric", "model.embedding_sharing": "gdes", "data.synthetic": True,
                 "model.vocab_size": 128, "model.num_layers": 1, "model.hidden_size": 32, "model.embedding_size": 16,
                 "model.num_heads": 1, "model.intermediate_size": 64, "data.max_seq_length": 16,
                 "model.max_position_embeddings": 16, "train.batch_size": 4, "optim.warmup_steps": 1,
                 "train.steps": 4, "train.log_every": 1, "train.eval_every": 0, "checkpoint.every_steps": 2,
                 "train.progress": "log", "checkpoint.async_save": False}
    config = config_lib.load("configs/pretrain.py:tiny", overrides)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretrain.train_and_evaluate(config, str(straight))
    shutil.copytree(straight / "checkpoints" / "2", resumed / "checkpoints" / "2")  # as if stopped after step 2
    pretrain.train_and_evaluate(config, str(resumed))
    finals = [checkpoints.restore_params(str(folder / "checkpoints" / "4"))[0] for folder in (straight, resumed)]
    diffs = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(a - b))), *finals)
    assert max(jax.tree_util.tree_leaves(diffs)) == 0.0
    assert np.abs(finals[0]["discriminator_embeddings"]["word_embeddings_delta"]).max() > 0  # it trained


def test_fine_tuning_starts_from_the_discriminator_s_merged_tables(tmp_path):
    """finetune --init of a GDES checkpoint: FinetuneModel.encode equals the GDES discriminator_hidden (the
    merged tables E_generator + E_delta and the discriminator's own LayerNorm, not the generator's block)."""
    from electra_jax import checkpoints, finetune
    from electra_jax.checkpoint_formats import open_checkpoint
    from electra_jax.finetune.glue import ClassificationHead

    config = _tiny()
    params = _random(modeling.param_shapes(config), 4, 300)
    checkpoints.save_params(str(tmp_path / "export"), params, config)
    checkpoint = open_checkpoint(str(tmp_path / "export"))
    ids, segments, mask = _batch()
    want = modeling.build_model(config).apply({"params": params}, ids, segments, mask, True,
                                              method="discriminator_hidden")
    model = finetune.FinetuneModel(modeling.ModelConfig.from_config(checkpoint.config.model), ClassificationHead(2))
    batch = {"input_ids": ids, "segment_ids": segments, "input_mask": mask}
    fresh = model.init({"params": jax.random.key(0)}, batch, True)["params"]
    merged = finetune.merge_pretrained(fresh, checkpoint.params)
    got = model.apply({"params": merged}, ids, segments, mask, True, method="encode")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
