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
