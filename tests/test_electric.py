"""Electric (objective.kind='electric') against hand computations and a PyTorch build of the original's loss.

The reference is google-research/electra `run_pretraining.py` at f93f3f8 ("release Electric code"):
`TwoTowerClozeTransformer` (a left-to-right and a right-to-left transformer over the *unmasked* ids, the
original's `BertModel(ltr=True / rtl=True)` with `matrix_band_part` causal masks, outputs combined as
`concat([roll(ltr, -1), roll(rtl, 1)], -1)`), `_get_cloze_outputs` (cross-entropy at every candidate
position), `_get_fake_data` (samples from the cloze logits at the masked positions, label = written) and
`_get_discriminator_output` with `electric_objective` (logit + stop_gradient(log q) + log(p / (1 - p))).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_reference import (assert_grads_close, at_positions, grads_by_name, imported_config, loss_and_grads,
                          masked_bce, parity_batch, random_hf_pair, same_draws, sample_fake, weighted_nll)

from electra_jax import config as config_lib
from electra_jax import convert, modeling, objective

VOCAB, SEQ = 1000, 24
FAVOURITE = 250  # a token the PyTorch cloze head strongly prefers, frequent in the test batch
CLS, SEP, MASK, PAD = 101, 102, 103, 0


def test_causal_masks_equal_the_original_band_parts_by_hand():
    # One example of 5 positions, the last one padding. ltr: i attends j <= i; rtl: j >= i; padded keys never.
    input_mask = jnp.asarray([[1, 1, 1, 1, 0]])
    ltr = [[1, 0, 0, 0, 0],
           [1, 1, 0, 0, 0],
           [1, 1, 1, 0, 0],
           [1, 1, 1, 1, 0],
           [1, 1, 1, 1, 0]]
    rtl = [[1, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 1, 0],
           [0, 0, 0, 1, 0],
           [0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(np.asarray(modeling.causal_attention_mask(input_mask, "ltr"))[0], ltr)
    np.testing.assert_array_equal(np.asarray(modeling.causal_attention_mask(input_mask, "rtl"))[0], rtl)


def test_tower_shift_is_the_original_roll_position_by_position():
    # Tower outputs that name their own position: ltr at t holds 10 + t, rtl at t holds 20 + t.
    ltr = (10 + jnp.arange(5, dtype=jnp.float32))[None, :, None]
    rtl = (20 + jnp.arange(5, dtype=jnp.float32))[None, :, None]
    shifted = np.asarray(modeling.shift_towers(ltr, rtl))[0]
    # Position t reads ltr at t - 1 and rtl at t + 1; roll wraps: position 0 gets ltr[4], position 4 gets rtl[0].
    np.testing.assert_array_equal(shifted[:, 0], [14, 10, 11, 12, 13])
    np.testing.assert_array_equal(shifted[:, 1], [21, 22, 23, 24, 20])


def _tiny_electric(**overrides):
    values = {"objective.kind": "electric", "model.vocab_size": 300, "model.num_layers": 2,
              "data.max_seq_length": 16, "model.max_position_embeddings": 16}
    values.update(overrides)
    return config_lib.load("configs/pretrain.py:tiny", values)


@pytest.mark.parametrize("sharing", ["tied", "untied"])
def test_cloze_logits_at_t_never_see_the_token_at_t(sharing):
    """Changing x_t leaves q(. | context) at t unchanged and changes it at t - 1 and t + 1 (both towers read x_t)."""
    config = _tiny_electric(**{"model.embedding_sharing": sharing})
    params = jax.jit(lambda key: modeling.init_params(config, key))(jax.random.key(0))
    rng = np.random.default_rng(0)
    ids = rng.integers(110, 300, (1, 16))
    ids[0, 0], ids[0, 12] = CLS, SEP
    mask = (np.arange(16) <= 12).astype(np.int32)[None]
    ids = ids * mask
    t = 6
    changed = ids.copy()
    changed[0, t] = 150 if ids[0, t] != 150 else 151
    before = np.asarray(modeling.generator_logits(params, config, ids, input_mask=mask))[0]
    after = np.asarray(modeling.generator_logits(params, config, changed, input_mask=mask))[0]
    np.testing.assert_allclose(after[t], before[t], atol=1e-6)
    for neighbour in (t - 1, t + 1):
        assert np.abs(after[neighbour] - before[neighbour]).max() > 1e-4


def test_electric_labels_every_written_position():
    ids = jnp.asarray([[CLS, 5, 6, 7, 8, SEP]])
    positions = jnp.asarray([[1, 2, 0]])  # slot 3 is padding (position 0 is never written)
    sampled = jnp.asarray([[5, 9, 9]])  # position 1 gets its own token back
    fake, electra_labels = objective.replace_tokens(ids, positions, sampled)
    _, electric_labels = objective.replace_tokens(ids, positions, sampled, changed_only=False)
    np.testing.assert_array_equal(np.asarray(fake), [[CLS, 5, 9, 7, 8, SEP]])
    np.testing.assert_array_equal(np.asarray(electra_labels), [[0, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(electric_labels), [[0, 1, 1, 0, 0, 0]])


def test_electric_config_errors_name_the_field():
    with pytest.raises(config_lib.ConfigError, match="model.attention"):
        _tiny_electric(**{"model.attention": "cudnn"})
    with pytest.raises(config_lib.ConfigError, match=r"objective.kind.*must be one of"):
        _tiny_electric(**{"objective.kind": "electrik"})


# ---------------------------------------------------------------------------------------------------------
# The whole loss and its gradients against PyTorch


def _without_lm_head(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "generator_lm_head.weight"}


class TorchElectric:
    """The original's Electric pieces in PyTorch: HF ELECTRA modules driven by hand-built masks.

    Both towers and the discriminator share one HF embedding module (the original's electra/embeddings scope
    with AUTO_REUSE); each tower has its own embeddings_project and encoder (generator_ltr / generator_rtl);
    the cloze head is HF's generator head with a 2 Hg input, tied to the shared word table.
    """

    def __init__(self, seed: int):
        import torch
        from transformers.models.electra.modeling_electra import ElectraGeneratorPredictions

        case = (32, 48, 2, 3, 80, 24, 2, 40, VOCAB, False)
        self.disc, self.ltr, self.disc_cfg, self.gen_cfg = random_hf_pair(case, seed)
        _, self.rtl, _, _ = random_hf_pair(case, seed + 1)
        for tower in (self.ltr, self.rtl):
            tower.electra.embeddings = self.disc.electra.embeddings
        head_cfg = type(self.gen_cfg)(**dict(self.gen_cfg.to_dict(), hidden_size=2 * self.gen_cfg.hidden_size))
        torch.manual_seed(seed + 2)
        self.head = ElectraGeneratorPredictions(head_cfg).eval()
        bias = torch.randn(VOCAB) * 0.2
        bias[FAVOURITE] += 12.0  # q puts most of its mass on one token, so samples often equal the original
        self.output_bias = torch.nn.Parameter(bias)
        with torch.no_grad():
            for p in self.head.parameters():
                p.copy_(torch.randn_like(p) * 0.2)

    def params_and_config(self):
        """The same weights as electra_jax parameters: HF -> electra_jax through the conversion table."""
        # Each tower's own lm head still holds its first word table (the embeddings were swapped for the shared
        # module above) and the reference never reads it: leave it out, as the import refuses an untied head.
        towers = [_without_lm_head(tower.state_dict()) for tower in (self.ltr, self.rtl)]
        tower_params = [convert.from_hf_state_dicts(self.disc.state_dict(), tower, self.disc_cfg.to_dict(),
                                                    self.gen_cfg.to_dict()) for tower in towers]
        (ltr, imported), (rtl, _) = tower_params
        config = imported_config(imported.model, SEQ, **{"objective.kind": "electric"})
        params = {k: ltr[k] for k in ("embeddings", "discriminator", "discriminator_predictions")}
        params["generator_ltr"], params["generator_rtl"] = ltr["generator"], rtl["generator"]
        params["generator_predictions"] = self._head_tree(
            {n: t.detach().numpy() for n, t in self.head.state_dict().items()}, self.output_bias.detach().numpy(),
            config)
        return params, config

    def grads(self, config):
        """The PyTorch gradients in the electra_jax parameter tree (the conversion transforms are linear)."""
        (ltr, _), (rtl, _) = [convert.from_hf_state_dicts(grads_by_name(self.disc),
                                                          _without_lm_head(grads_by_name(tower)),
                                                          self.disc_cfg.to_dict(), self.gen_cfg.to_dict())
                              for tower in (self.ltr, self.rtl)]
        grads = {k: ltr[k] for k in ("embeddings", "discriminator", "discriminator_predictions")}
        grads["generator_ltr"], grads["generator_rtl"] = ltr["generator"], rtl["generator"]
        grads["generator_predictions"] = self._head_tree(grads_by_name(self.head), self.output_bias.grad.numpy(),
                                                         config)
        return grads

    @staticmethod
    def _head_tree(head: dict, bias, config) -> dict:
        padded = np.zeros(config.model.padded_vocab_size, np.float32)
        padded[:VOCAB] = bias
        return {"dense": {"kernel": head["dense.weight"].T, "bias": head["dense.bias"]},
                "LayerNorm": {"scale": head["LayerNorm.weight"], "bias": head["LayerNorm.bias"]},
                "output_bias": padded}

    def tower(self, model, input_ids, segments, key_mask, direction: str):
        import torch

        seq = input_ids.shape[1]
        band = torch.tril(torch.ones(seq, seq)) if direction == "ltr" else torch.triu(torch.ones(seq, seq))
        allowed = key_mask.float()[:, None, :] * band[None]  # the original: input mask x matrix_band_part
        bias = (1.0 - allowed)[:, None] * -10000.0  # BertModel's additive attention mask
        hidden = model.electra.embeddings(input_ids=input_ids, token_type_ids=segments)
        hidden = model.electra.embeddings_project(hidden)
        return model.electra.encoder(hidden, attention_mask=bias).last_hidden_state

    def cloze_logits(self, input_ids, segments, key_mask):
        import torch

        def roll(arr, direction):  # run_pretraining.roll
            return torch.cat([arr[:, direction:], arr[:, :direction]], 1)

        ltr = self.tower(self.ltr, input_ids, segments, key_mask, "ltr")
        rtl = self.tower(self.rtl, input_ids, segments, key_mask, "rtl")
        hidden = self.head(torch.cat([roll(ltr, -1), roll(rtl, 1)], -1))
        return hidden @ self.disc.electra.embeddings.word_embeddings.weight.T + self.output_bias


def test_electric_loss_and_gradients_equal_a_pytorch_build_of_the_original():
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")

    ref = TorchElectric(seed=5)
    params, config = ref.params_and_config()
    batch = parity_batch(VOCAB, SEQ, favourite=FAVOURITE)
    rng = jax.random.key(7)
    (loss, metrics), grads = loss_and_grads(params, config, batch, rng)

    # The same random choices, drawn as pretrain_loss draws them; everything else is PyTorch.
    o = config.objective
    masked, sample_rng = same_draws(rng, batch, config)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)
    segments = torch.tensor(batch["segment_ids"], dtype=torch.long)
    key_mask = torch.tensor(batch["input_mask"], dtype=torch.long)

    # Generator: cloze logits on the unmasked ids, loss over every candidate (not [CLS]/[SEP]/[MASK]/[PAD]/padding).
    cloze = ref.cloze_logits(ids, segments, key_mask)
    candidates = ((ids != CLS) & (ids != SEP) & (ids != MASK) & (ids != PAD) & (key_mask == 1)).float()
    cloze_loss = weighted_nll(cloze, ids, candidates)

    # Replacements sampled from the cloze logits at the masked positions; Electric's label is "written".
    fake, labels = sample_fake(sample_rng, at_positions(cloze, masked), masked, batch, config, changed_only=False)
    written = torch.zeros_like(ids)  # the label by hand: every selected position but 0, changed or not
    written.scatter_(1, torch.tensor(np.asarray(masked.positions), dtype=torch.long), 1)
    written[:, 0] = 0
    assert torch.equal(labels, written.float())
    # Some samples equal the original token and still count as replaced.
    assert int(((fake == ids) & (written == 1)).sum()) > 0 and int((fake != ids).sum()) > 0

    raw = ref.disc(input_ids=fake, token_type_ids=segments, attention_mask=key_mask).logits
    log_q = cloze.log_softmax(-1).gather(-1, fake[..., None])[..., 0].detach()
    disc_loss = masked_bce(raw + log_q + np.log(o.mask_prob / (1 - o.mask_prob)), labels, key_mask)
    total = o.gen_weight * cloze_loss + o.disc_weight * disc_loss
    total.backward()

    assert o.disc_weight == 50.0 and o.gen_weight == 1.0
    np.testing.assert_allclose(float(metrics["cloze_loss"]), cloze_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["disc_loss"]), disc_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), total.item(), rtol=1e-5)
    assert_grads_close(grads, ref.grads(config))


def test_export_writes_the_discriminator_and_says_the_generator_cannot_go(caplog):
    """The discriminator exports as an ordinary ElectraForPreTraining with our raw logits; no generator."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    config = _tiny_electric()
    params = jax.device_get(jax.jit(lambda key: modeling.init_params(config, key))(jax.random.key(3)))
    disc, gen, (disc_cfg, gen_cfg) = convert.to_hf_state_dicts(params, config)
    assert gen is None and gen_cfg is None
    assert "two-tower cloze generator" in caplog.text and "no HF transformers class" in caplog.text
    hf = transformers.ElectraForPreTraining(transformers.ElectraConfig(**disc_cfg, attn_implementation="eager"))
    missing, unexpected = hf.load_state_dict({k: torch.tensor(v) for k, v in disc.items()}, strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing)
    ids = np.random.default_rng(1).integers(110, 300, (2, 16))
    ours = np.asarray(modeling.discriminator_logits(params, config, ids))
    with torch.no_grad():
        theirs = hf.eval()(input_ids=torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_convert_to_hf_command_exports_the_discriminator_and_notes_the_generator_once(tmp_path):
    """`python -m electra_jax.convert to_hf --check` on an Electric checkpoint, as a user runs it: exit 0,
    OUT/discriminator/ alone, the two-tower note as one log line (no traceback), HF logits equal to ours."""
    torch = pytest.importorskip("torch", reason="the export check needs torch (pip install -e .[convert])")
    transformers = pytest.importorskip("transformers", reason="the export check needs transformers")
    from electra_jax import checkpoints

    config = _tiny_electric()
    params = jax.device_get(jax.jit(lambda key: modeling.init_params(config, key))(jax.random.key(3)))
    checkpoints.save_params(str(tmp_path / "ckpt"), params, config)  # a fresh model: the cheapest checkpoint
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                               + [f"word{i}" for i in range(config.model.vocab_size - 5)]) + "\n")
    out = tmp_path / "hf"
    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-m", "electra_jax.convert", "to_hf", f"--checkpoint={tmp_path / 'ckpt'}",
                             f"--output_dir={out}", f"--vocab={vocab}", "--check"],
                            env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=repo, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    assert sorted(os.listdir(out)) == ["discriminator"]  # no generator/, not even an empty one
    disc = out / "discriminator"
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json"} <= set(os.listdir(disc))
    assert json.loads((disc / "config.json").read_text())["architectures"] == ["ElectraForPreTraining"]
    assert f"wrote discriminator: {disc}" in result.stdout and "wrote generator" not in result.stdout
    assert "discriminator: max |logit difference|" in result.stdout and "generator: max" not in result.stdout

    # The note: exactly one line, saying why, and nothing that looks like a crash.
    notes = [line for line in result.stderr.splitlines() if "two-tower cloze generator" in line]
    assert len(notes) == 1 and "no HF transformers class" in notes[0] and modeling.TWO_TOWER_EXPORT_NOTE in notes[0]
    assert "Traceback" not in result.stderr

    # The exported discriminator in HF PyTorch gives our raw logits (padding and a second segment included).
    rng = np.random.default_rng(1)
    ids = rng.integers(5, config.model.vocab_size, (3, 16))
    mask = np.ones_like(ids)
    mask[1, 10:], mask[2, 5:] = 0, 0
    segments = np.zeros_like(ids)
    segments[:, 8:] = 1
    ids, segments = ids * mask, segments * mask
    hf = transformers.ElectraForPreTraining.from_pretrained(str(disc), dtype=torch.float32,
                                                            attn_implementation="eager").eval()
    with torch.no_grad():
        theirs = hf(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                    attention_mask=torch.tensor(mask)).logits.numpy()
    ours = np.asarray(modeling.discriminator_logits(params, config, ids, segments, mask))
    valid = mask.astype(bool)
    np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-5)


def test_energy_auc_is_sklearn_over_the_changed_tokens_not_every_written_one():
    """energy_auc_tokens: the raw energies against ELECTRA's labels (written and different), over the real tokens.

    A cloze head pushed towards FAVOURITE, on text that is mostly FAVOURITE, samples the original token back at
    many written positions; those count as replaced in Electric's loss but not in this AUC."""
    metrics_lib = pytest.importorskip("sklearn.metrics")
    config = _tiny_electric()
    params = jax.device_get(jax.jit(lambda key: modeling.init_params(config, key))(jax.random.key(5)))
    bias = np.array(params["generator_predictions"]["output_bias"])
    bias[FAVOURITE] += 12.0
    params["generator_predictions"]["output_bias"] = bias
    rng = np.random.default_rng(2)
    batch_size, seq = config.train.batch_size, config.data.max_seq_length
    ids = np.where(rng.random((batch_size, seq)) < 0.5, FAVOURITE, rng.integers(110, 300, (batch_size, seq)))
    lengths = rng.integers(8, seq + 1, (batch_size, 1))
    mask = (np.arange(seq)[None, :] < lengths).astype(np.int32)
    ids[:, 0] = CLS
    ids[np.arange(batch_size), lengths[:, 0] - 1] = SEP
    ids = ids * mask
    batch = {"input_ids": jnp.asarray(ids), "input_mask": jnp.asarray(mask), "segment_ids": jnp.zeros_like(ids)}
    model, key = modeling.build_model(config), jax.random.key(7)
    _, metrics = jax.jit(lambda p, b, k: objective.pretrain_loss(p, b, k, model=model, config=config,
                                                                 train=False))(params, batch, key)
    parts = jax.jit(lambda p, b, k: objective.forward(p, b, k, model=model, config=config, train=False))(
        params, batch, key)

    written = np.asarray(parts.labels).astype(bool)
    changed = written & (np.asarray(parts.fake_ids) != ids)
    real = mask.astype(bool)
    assert (written & ~changed).sum() >= 0.3 * written.sum()  # many samples gave the original back
    energies = np.asarray(parts.disc_logits)
    expected = metrics_lib.roc_auc_score(changed[real], energies[real])
    assert abs(float(metrics["energy_auc_tokens"]) - expected) < 1e-3  # bins 0.0001 logits wide
    # Electric's own labels give another number, so the test tells the two apart.
    assert abs(metrics_lib.roc_auc_score(written[real], energies[real]) - expected) > 0.01
