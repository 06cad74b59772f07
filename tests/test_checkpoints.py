"""Checkpoints: params export/import, restore_params from every kind of path, training-state round trips."""

import jax
import mini
import numpy as np
import pytest

from electra_jax import checkpoints, modeling, sharding, train_state

def _config(**extra):
    """The mini network with two layers (the unstacked layout has layer_0 and layer_1)."""
    return mini.config(**{"model.num_layers": 2, "data.max_seq_length": 16, "train.batch_size": 4, **extra})


def _flat(tree):
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_save_params_round_trip_gives_the_canonical_unstacked_layout(tmp_path):
    config = _config(**{"model.scan_layers": True})
    stacked = jax.tree_util.tree_map(np.asarray, modeling.init_params(config, jax.random.PRNGKey(1)))
    checkpoints.save_params(str(tmp_path / "export"), stacked, config)
    params, restored_config = checkpoints.restore_params(str(tmp_path / "export"))
    assert restored_config.model.hidden_size == 64 and restored_config.model.scan_layers
    disc = params["discriminator"]
    assert "layers" not in disc and sorted(k for k in disc if k.startswith("layer_")) == ["layer_0", "layer_1"]
    # Layer i of the export is slice i of the stacked array.
    for i in range(2):
        np.testing.assert_array_equal(disc[f"layer_{i}"]["intermediate"]["kernel"],
                                      stacked["discriminator"]["layers"]["intermediate"]["kernel"][i])
    np.testing.assert_array_equal(params["embeddings"]["word_embeddings"], stacked["embeddings"]["word_embeddings"])
    assert all(isinstance(v, np.ndarray) for v in jax.tree_util.tree_leaves(params))


def test_training_checkpoint_restores_state_and_params_from_any_path(tmp_path):
    config = _config()
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    state = trainer.init_state(0)
    expected = _flat(jax.device_get(state.to_dict()))
    ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", keep=2, async_save=True)
    for step in (2, 4, 6):
        ckpt.save(step, state, data_states={0: {"batches": step}}, config=config)
    ckpt.close()
    ckpt = checkpoints.Checkpointer(tmp_path / "checkpoints", keep=2)
    assert ckpt.all_steps() == [4, 6]  # keep = 2
    restored, data, saved_config = ckpt.restore(6, trainer.abstract_state())
    assert data == {0: {"batches": 6}} and saved_config["model"]["hidden_size"] == 64
    got = _flat(jax.device_get(restored.to_dict()))
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])
    for path in (tmp_path, tmp_path / "checkpoints", tmp_path / "checkpoints" / "4"):
        params, cfg = checkpoints.restore_params(str(path))
        assert cfg.model.vocab_size == 512
        np.testing.assert_array_equal(params["generator_predictions"]["output_bias"],
                                      expected["params/generator_predictions/output_bias"])


def test_restore_params_errors_name_the_path(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        checkpoints.restore_params(str(tmp_path / "missing"))
    with pytest.raises(checkpoints.CheckpointError, match="holds no electra_jax checkpoint"):
        checkpoints.restore_params(str(tmp_path))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a workdir before its first save
    with pytest.raises(checkpoints.CheckpointError, match="is a workdir whose checkpoints/ holds no saved step yet"):
        checkpoints.restore_params(str(tmp_path / "run"))


def test_continued_pretraining_needs_the_generator():
    config = _config()
    shapes = modeling.param_shapes(config)
    params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    train_state.check_params_match(params, shapes)  # a full checkpoint is accepted
    disc_only = {k: v for k, v in params.items() if not k.startswith("generator")}
    with pytest.raises(ValueError, match="has no generator"):
        train_state.check_params_match(disc_only, shapes)
    wrong = dict(params, embeddings=dict(params["embeddings"], word_embeddings=np.zeros((640, 32), np.float32)))
    with pytest.raises(ValueError, match=r"word_embeddings has shape \(640, 32\) but the model expects \(512, 32\)"):
        train_state.check_params_match(wrong, shapes)


def test_reset_optimizer_keeps_params_and_zeroes_adam_moments():
    config = _config()
    trainer = train_state.Trainer(config, sharding.make_mesh(config.mesh))
    state = trainer.init_state(0)
    used = state.replace(opt_state=jax.tree_util.tree_map(lambda x: x + 1, state.opt_state))
    reset = trainer.reset_optimizer(used)
    for leaf in jax.tree_util.tree_leaves(reset.opt_state):
        assert not np.any(np.asarray(leaf))  # Adam moments and count start at zero
    np.testing.assert_array_equal(np.asarray(reset.params["embeddings"]["word_embeddings"]),
                                  np.asarray(used.params["embeddings"]["word_embeddings"]))


def test_a_saved_config_with_old_run_settings_still_loads(tmp_path):
    """Earlier versions accepted checkpoint.every_steps=0 and a None clip norm; a checkpoint saved with them opens
    (fine-tuning --init, convert, predict), though a new run is refused such values at load."""
    import json

    config = _config()
    params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), modeling.param_shapes(config))
    checkpoints.save_params(str(tmp_path / "export"), params, config)
    saved = tmp_path / "export" / checkpoints.PARAMS_CONFIG_FILE
    old = json.loads(saved.read_text())
    old["checkpoint"]["every_steps"], old["optim"]["clip_norm"], old["train"]["log_every"] = 0, None, 0
    saved.write_text(json.dumps(old))
    _, back = checkpoints.restore_params(str(tmp_path / "export"))
    assert (back.checkpoint.every_steps, back.optim.clip_norm) == (0, None)
