"""The whole ELECTRA objective and its gradients against the same loss built from HF transformers PyTorch.

`objective.pretrain_loss` (masking, generator at the masked slots, sampling, replacement, discriminator, the
1 x MLM + 50 x disc weighting, the shared embedding block receiving both losses' gradients) is compared with
a PyTorch computation of the original's loss: `ElectraForMaskedLM` and `ElectraForPreTraining` sharing one
embedding module, fed the same masked and corrupted ids. Gradients come back through the conversion rule
table (its transposes and reshapes are linear, so they map gradients exactly as they map weights).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hf_reference import random_hf_pair

from electra_jax import config as config_lib
from electra_jax import convert, modeling, objective

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

VOCAB, SEQ = 1000, 24


def _hf_pair(seed: int):
    disc, gen, disc_cfg, gen_cfg = random_hf_pair((32, 48, 2, 3, 80, 24, 2, 40, VOCAB, False), seed)
    # One embedding block for both networks (the original's electra/embeddings scope), so both losses' gradients
    # meet in it, and the generator's output layer tied to its word table.
    gen.electra.embeddings = disc.electra.embeddings
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    return disc, gen, disc_cfg, gen_cfg


def _batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(200, VOCAB, (4, SEQ))
    mask = np.ones_like(ids)
    mask[1, 17:] = 0
    mask[3, 9:] = 0
    ids[:, 0] = 101
    lengths = mask.sum(1)
    ids[np.arange(4), lengths - 1] = 102
    ids = ids * mask
    segments = np.zeros_like(ids)
    segments[:, 8:] = 1
    return {"input_ids": ids.astype(np.int32), "input_mask": mask.astype(np.int32),
            "segment_ids": (segments * mask).astype(np.int32)}


def _grads_by_name(module) -> dict:
    out = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        grad = getattr(tensor, "grad", None)
        out[name] = np.zeros(tuple(tensor.shape), np.float32) if grad is None else grad.detach().numpy().copy()
    return out


def test_pretrain_loss_and_gradients_equal_an_hf_pytorch_electra_loss():
    disc, gen, disc_cfg, gen_cfg = _hf_pair(seed=3)
    params, imported = convert.from_hf_state_dicts(disc.state_dict(), gen.state_dict(), disc_cfg.to_dict(),
                                                   gen_cfg.to_dict())
    config = convert.full_config(imported.model)
    config.data.max_seq_length = SEQ
    config.objective.max_predictions_per_seq = 0  # re-derived for SEQ
    config = config_lib.finalize(config)
    model = modeling.build_model(config)
    batch = _batch()
    rng = jax.random.key(11)

    (loss, metrics), grads = jax.value_and_grad(
        lambda p: objective.pretrain_loss(p, batch, rng, model=model, config=config, train=False),
        has_aux=True)(params)

    # The same random choices, drawn as pretrain_loss draws them (masking and sampling are tested against
    # numpy ports of the original elsewhere); the losses below are PyTorch's.
    o, d = config.objective, config.data
    mask_rng, sample_rng, _, _ = jax.random.split(rng, 4)
    masked = objective.mask_inputs(mask_rng, jnp.asarray(batch["input_ids"]), jnp.asarray(batch["input_mask"]),
                                   mask_prob=o.mask_prob, max_predictions=o.max_predictions_per_seq,
                                   mask_token_prob=o.mask_token_prob, random_token_prob=o.random_token_prob,
                                   vocab_size=VOCAB, mask_id=d.mask_id, cls_id=d.cls_id, sep_id=d.sep_id)
    positions = torch.tensor(np.asarray(masked.positions), dtype=torch.long)
    targets = torch.tensor(np.asarray(masked.target_ids), dtype=torch.long)
    weights = torch.tensor(np.asarray(masked.weights))
    segments = torch.tensor(batch["segment_ids"], dtype=torch.long)
    attention = torch.tensor(batch["input_mask"], dtype=torch.long)

    gen_logits = gen(input_ids=torch.tensor(np.asarray(masked.input_ids), dtype=torch.long),
                     token_type_ids=segments, attention_mask=attention).logits
    at_slots = torch.gather(gen_logits, 1, positions[..., None].expand(-1, -1, VOCAB))
    nll = -torch.gather(torch.log_softmax(at_slots, -1), 2, targets[..., None])[..., 0]
    gen_loss = (weights * nll).sum() / (weights.sum() + 1e-6)

    # Sampled over the padded table, as the model's logits are (padding rows at -1e9: never drawn).
    padded = np.full(at_slots.shape[:2] + (config.model.padded_vocab_size,), -1e9, np.float32)
    padded[..., :VOCAB] = at_slots.detach().numpy()
    sampled = objective.sample_replacements(sample_rng, jnp.asarray(padded))
    fake, labels = objective.replace_tokens(jnp.asarray(batch["input_ids"]), masked.positions, sampled)
    disc_logits = disc(input_ids=torch.tensor(np.asarray(fake), dtype=torch.long), token_type_ids=segments,
                       attention_mask=attention).logits
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        disc_logits, torch.tensor(np.asarray(labels), dtype=torch.float32), reduction="none")
    valid = attention.float()
    disc_loss = (bce * valid).sum() / (valid.sum() + 1e-6)
    total = o.gen_weight * gen_loss + o.disc_weight * disc_loss
    total.backward()

    assert float(np.asarray(labels).sum()) > 0  # some tokens really were replaced
    np.testing.assert_allclose(float(metrics["mlm_loss"]), gen_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["disc_loss"]), disc_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), total.item(), rtol=1e-5)

    expected, _ = convert.from_hf_state_dicts(_grads_by_name(disc), _grads_by_name(gen), disc_cfg.to_dict(),
                                              gen_cfg.to_dict())
    ours = jax.tree_util.tree_leaves_with_path(grads)
    theirs = dict(jax.tree_util.tree_leaves_with_path(expected))
    assert len(ours) == len(theirs)
    for path, g in ours:
        ref = np.asarray(theirs[path])
        scale = max(float(np.max(np.abs(ref))), 1e-3)
        np.testing.assert_allclose(np.asarray(g), ref, atol=2e-5 * scale, rtol=1e-4,
                                   err_msg=jax.tree_util.keystr(path))
