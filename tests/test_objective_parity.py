"""The whole ELECTRA objective and its gradients against the same loss built from HF transformers PyTorch.

`objective.pretrain_loss` (masking, generator at the masked slots, sampling, replacement, discriminator, the
1 x MLM + 50 x disc weighting, the shared embedding block receiving both losses' gradients) is compared with
a PyTorch computation of the original's loss: `ElectraForMaskedLM` and `ElectraForPreTraining` sharing one
embedding module, fed the same masked and corrupted ids. Gradients come back through the conversion rule
table (its transposes and reshapes are linear, so they map gradients exactly as they map weights).
"""

import jax
import numpy as np
import pytest
from hf_reference import (assert_grads_close, grads_by_name, imported_config, loss_and_grads, parity_batch,
                          random_hf_pair, torch_electra_loss)

from electra_jax import convert

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


def test_pretrain_loss_and_gradients_equal_an_hf_pytorch_electra_loss():
    disc, gen, disc_cfg, gen_cfg = _hf_pair(seed=3)
    params, imported = convert.from_hf_state_dicts(disc.state_dict(), gen.state_dict(), disc_cfg.to_dict(),
                                                   gen_cfg.to_dict())
    config = imported_config(imported.model, SEQ)
    batch = parity_batch(VOCAB, SEQ)
    rng = jax.random.key(11)
    (loss, metrics), grads = loss_and_grads(params, config, batch, rng)

    # The same random choices fed to the original's loss built from the HF modules.
    total, gen_loss, disc_loss = torch_electra_loss(disc, gen, batch, rng, config)
    total.backward()

    np.testing.assert_allclose(float(metrics["mlm_loss"]), gen_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["disc_loss"]), disc_loss.item(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), total.item(), rtol=1e-5)

    expected, _ = convert.from_hf_state_dicts(grads_by_name(disc), grads_by_name(gen), disc_cfg.to_dict(),
                                              gen_cfg.to_dict())
    assert_grads_close(grads, expected)
