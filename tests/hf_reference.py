"""Random HF transformers ELECTRA pairs, the independent reference of the parity tests (import needs torch)."""

import pytest


def random_hf_pair(case, seed):
    """(ElectraForPreTraining, ElectraForMaskedLM, disc config, gen config) with random values everywhere.

    case = (embedding, hidden, layers, heads, inter, gen hidden, gen heads, gen inter, vocab, untied). Values are
    N(0, 0.2) in every tensor (LayerNorms too) so a mis-mapped tensor shows; with tied embeddings the generator's
    embedding block holds the discriminator's values, as ELECTRA shares it. Skips without torch/transformers.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    emb, hidden, layers, heads, inter, g_hidden, g_heads, g_inter, vocab, untied = case
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu",
                  layer_norm_eps=1e-12, attn_implementation="eager")
    disc_cfg = transformers.ElectraConfig(embedding_size=emb, hidden_size=hidden, num_hidden_layers=layers,
                                          num_attention_heads=heads, intermediate_size=inter, **common)
    gen_cfg = transformers.ElectraConfig(embedding_size=g_hidden if untied else emb, hidden_size=g_hidden,
                                         num_hidden_layers=layers, num_attention_heads=g_heads,
                                         intermediate_size=g_inter, **common)
    disc = transformers.ElectraForPreTraining(disc_cfg).eval()
    gen = transformers.ElectraForMaskedLM(gen_cfg).eval()
    with torch.no_grad():
        for p in list(disc.parameters()) + list(gen.parameters()):
            p.copy_(torch.randn_like(p) * 0.2)
        if not untied:
            for name in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
                getattr(gen.electra.embeddings, name).load_state_dict(
                    getattr(disc.electra.embeddings, name).state_dict())
    return disc, gen, disc_cfg, gen_cfg


# ---------------------------------------------------------------------------------------------------------
# The pieces of the parity tests of whole objectives (ELECTRA, GDES, Electric): the same random draws fed to a
# PyTorch loss, and its gradients compared with electra_jax's.


def parity_batch(vocab: int, seq: int = 24, favourite: int | None = None) -> dict:
    """Four rows of random ids, [CLS] ... [SEP], two of them padded, a second segment from position 8.
    With `favourite`, 40% of the ids are that token (so a generator preferring it resamples the original)."""
    import numpy as np

    rng = np.random.default_rng(0)
    ids = rng.integers(200, vocab, (4, seq))
    if favourite is not None:
        ids[rng.random(ids.shape) < 0.4] = favourite
    mask = np.ones_like(ids)
    mask[1, 17:] = 0
    mask[3, 9:] = 0
    ids[:, 0] = 101
    ids[np.arange(4), mask.sum(1) - 1] = 102
    ids = ids * mask
    segments = np.zeros_like(ids)
    segments[:, 8:] = 1
    return {"input_ids": ids.astype(np.int32), "input_mask": mask.astype(np.int32),
            "segment_ids": (segments * mask).astype(np.int32)}


def grads_by_name(module) -> dict:
    """{state-dict name: gradient as numpy} (zeros where none flowed; non-leaf tensors have none of their own)."""
    import numpy as np

    out = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        grad = tensor.grad if tensor.is_leaf else None
        out[name] = np.zeros(tuple(tensor.shape), np.float32) if grad is None else grad.detach().numpy().copy()
    return out


def same_draws(rng, batch: dict, config):
    """(masked inputs, sampling key) drawn as objective.pretrain_loss draws them from its key `rng` (masking
    and sampling are tested against numpy ports of the original elsewhere; the parity tests check the rest)."""
    import jax
    import jax.numpy as jnp

    from electra_jax import objective

    o, d = config.objective, config.data
    mask_rng, sample_rng, _, _ = jax.random.split(rng, 4)
    masked = objective.mask_inputs(mask_rng, jnp.asarray(batch["input_ids"]), jnp.asarray(batch["input_mask"]),
                                   mask_prob=o.mask_prob, max_predictions=o.max_predictions_per_seq,
                                   mask_token_prob=o.mask_token_prob, random_token_prob=o.random_token_prob,
                                   vocab_size=config.model.vocab_size, mask_id=d.mask_id, cls_id=d.cls_id,
                                   sep_id=d.sep_id)
    return masked, sample_rng


def at_positions(logits, masked):
    """torch [B, S, V] -> [B, N, V] at the masked positions (the original gather_positions)."""
    import numpy as np
    import torch

    positions = torch.tensor(np.asarray(masked.positions), dtype=torch.long)
    return torch.gather(logits, 1, positions[..., None].expand(-1, -1, logits.shape[-1]))


def weighted_nll(logits, targets, weights):
    """Σ w·(-log softmax(logits)[target]) / (Σ w + 1e-6) in torch (the original get_softmax_output's loss)."""
    nll = -logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    return (weights * nll).sum() / (weights.sum() + 1e-6)


def sample_fake(sample_rng, slot_logits, masked, batch: dict, config, changed_only: bool = True):
    """(fake ids, labels) as torch tensors: Gumbel samples of the torch slot logits over the padded table (as the
    model's are: padding at -1e9, never drawn) written into the uncorrupted ids by objective.replace_tokens."""
    import jax.numpy as jnp
    import numpy as np
    import torch

    from electra_jax import objective

    vocab = slot_logits.shape[-1]
    padded = np.full(slot_logits.shape[:2] + (config.model.padded_vocab_size,), -1e9, np.float32)
    padded[..., :vocab] = slot_logits.detach().numpy()
    sampled = objective.sample_replacements(sample_rng, jnp.asarray(padded))
    fake, labels = objective.replace_tokens(jnp.asarray(batch["input_ids"]), masked.positions, sampled,
                                            changed_only=changed_only)
    return torch.tensor(np.asarray(fake), dtype=torch.long), torch.tensor(np.asarray(labels), dtype=torch.float32)


def masked_bce(logits, labels, input_mask):
    """Sigmoid cross-entropy averaged over every non-pad token (the original discriminator loss), in torch."""
    import torch

    valid = input_mask.float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (bce * valid).sum() / (valid.sum() + 1e-6)


def torch_electra_loss(disc, gen, batch: dict, rng, config):
    """(total, mlm loss, disc loss) of the original ELECTRA objective with HF modules, on electra_jax's draws."""
    import numpy as np
    import torch

    masked, sample_rng = same_draws(rng, batch, config)
    segments = torch.tensor(batch["segment_ids"], dtype=torch.long)
    attention = torch.tensor(batch["input_mask"], dtype=torch.long)
    gen_logits = gen(input_ids=torch.tensor(np.asarray(masked.input_ids), dtype=torch.long),
                     token_type_ids=segments, attention_mask=attention).logits
    at_slots = at_positions(gen_logits, masked)
    mlm = weighted_nll(at_slots, torch.tensor(np.asarray(masked.target_ids), dtype=torch.long),
                       torch.tensor(np.asarray(masked.weights)))
    fake, labels = sample_fake(sample_rng, at_slots, masked, batch, config)
    assert float(labels.sum()) > 0  # some tokens really were replaced
    disc_logits = disc(input_ids=fake, token_type_ids=segments, attention_mask=attention).logits
    d_loss = masked_bce(disc_logits, labels, attention)
    o = config.objective
    return o.gen_weight * mlm + o.disc_weight * d_loss, mlm, d_loss


def assert_grads_close(grads, expected) -> None:
    """Every gradient leaf equal to the reference's to 1e-4 relative (2e-5 of the largest |value| absolute)."""
    import jax
    import numpy as np

    theirs = dict(jax.tree_util.tree_leaves_with_path(expected))
    ours = jax.tree_util.tree_leaves_with_path(grads)
    assert len(ours) == len(theirs)
    for path, g in ours:
        ref = np.asarray(theirs[path])
        scale = max(float(np.max(np.abs(ref))), 1e-3)
        np.testing.assert_allclose(np.asarray(g), ref, atol=2e-5 * scale, rtol=1e-4, err_msg=jax.tree_util.keystr(path))


def imported_config(model_section, seq: int, **fields):
    """The full config around an HF-imported model section for sequences of `seq`, with dotted `fields` set
    (e.g. {"objective.kind": "electric"}), validated."""
    from electra_jax import config as config_lib
    from electra_jax import convert

    config = convert.full_config(model_section)
    config.data.max_seq_length = seq
    config.objective.max_predictions_per_seq = 0  # re-derived for seq
    for dotted, value in fields.items():
        section, name = dotted.split(".")
        config[section][name] = value
    return config_lib.finalize(config)


def loss_and_grads(params, config, batch: dict, rng):
    """((loss, metrics), grads) of objective.pretrain_loss in eval mode (no dropout, as the references)."""
    import jax

    from electra_jax import modeling, objective

    model = modeling.build_model(config)
    return jax.value_and_grad(
        lambda p: objective.pretrain_loss(p, batch, rng, model=model, config=config, train=False), has_aux=True)(params)
