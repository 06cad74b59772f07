"""FLOP counts: the model FLOPs of one electra_jax training step (for MFU), and the paper's counter.

`model_flops_per_step` is the number the benchmark and the training loop divide by time to report MFU.
It counts what one jitted step actually computes, matrix multiplies only, at 2 FLOPs per multiply-add:

    forward, per token of a network with width H, L layers, FFN width I, sequence length S:
        L * (8 H^2            query, key, value and attention-output projections
             + 4 H I          the two FFN matmuls
             + 4 S H)         attention scores q.k and the probability-weighted sum of values
        + 2 E H               the embedding projection, when the embedding width E != H
    discriminator head, per token:            2 H^2 + 2 H   (dense + the 1-unit logit layer)
    generator head, per *gathered* position:  2 Hg E_t + 2 E_t V   (dense, then the tied word table)
    training step = 3 x forward  (backward = 2 x forward: gradients w.r.t. activations and weights)

The generator head runs only at the `max_predictions_per_seq` gathered slots of each example (that is
all `generator_logits_at` computes), so it is counted at N slots, not at all S positions. V is the real
vocabulary (`vocab_size`), not the padded table: the padding is an implementation detail, and counting
it would flatter MFU. Embedding lookups, softmax, LayerNorm, GELU, dropout, sampling and the optimizer
update are not counted (elementwise work, a few percent at these widths). With objective.kind='mlm'
the step is the discriminator-sized encoder plus the generator head on its gathered slots.

Electric (objective.kind='electric') runs two generator towers over every token and its cloze head at
*every* position (the cloze loss and log q need all of them), the head's dense layer reading both towers'
outputs concatenated:
    cloze head, per token:  2 (2 Hg) E_t + 2 E_t V
The causal towers still compute full S x S attention scores (the mask only hides half), so their
attention is counted like any other. GDES adds only elementwise work (stop_gradient(E) + delta): its
count equals the tied one.

`original_flops` and `transformer_train_flops` reimplement google-research/electra
`flops_computation.py`, the counter behind the paper's FLOPs columns (ELECTRA_REFERENCE.md section 6.1).
Its conventions differ from ours (dense one-hot embedding lookups, elementwise ops counted, forward =
backward so 2 x forward, output softmax on 15.625% of positions); it is kept to reproduce the paper's
numbers, not to compute MFU.
"""

from __future__ import annotations

from typing import Any

# Elementwise constants of the original counter (per activation).
_DROPOUT = 4  # random draw, compare, mask multiply, rescale
_LAYER_NORM = 5  # mean, variance (square + sum), bias, scale
_ACTIVATION = 8  # the tanh-form GELU
_SOFTMAX = 5  # max-subtract, exp, sum, divide


def encoder_forward_flops(hidden: int, layers: int, intermediate: int, seq_len: int,
                          embedding: int | None = None) -> float:
    """Matmul FLOPs of one encoder's forward pass per token (see the module docstring)."""
    per_layer = 8 * hidden * hidden + 4 * hidden * intermediate + 4 * seq_len * hidden
    total = layers * per_layer
    if embedding is not None and embedding != hidden:
        total += 2 * embedding * hidden
    return float(total)


def model_flops_per_step(config: Any, batch_size: int, seq_len: int) -> float:
    """Model FLOPs of one full training step (forward + backward) on batch_size x seq_len tokens.

    `config` is a finalized pre-training config (`electra_jax.config.load`); seq_len overrides
    config.data.max_seq_length, and the number of gathered generator slots is recomputed for it unless
    config.objective.max_predictions_per_seq was set explicitly for that length.
    """
    from electra_jax.config import max_predictions_per_seq

    model = config.model
    objective = config.objective
    configured_seq = config.data.max_seq_length if "data" in config else seq_len
    if objective.max_predictions_per_seq and configured_seq == seq_len:
        slots = int(objective.max_predictions_per_seq)
    else:
        slots = max(1, min(seq_len, max_predictions_per_seq(objective.mask_prob, seq_len)))
    tokens = batch_size * seq_len
    disc_encoder = encoder_forward_flops(model.hidden_size, model.num_layers, model.intermediate_size, seq_len,
                                         model.embedding_size)
    if objective.kind == "mlm":
        # The masked-LM baseline: generator head (table width E) on the discriminator encoder.
        gen_head = 2 * model.hidden_size * model.embedding_size + 2 * model.embedding_size * model.vocab_size
        forward = tokens * disc_encoder + batch_size * slots * gen_head
        return 3.0 * forward
    gen_hidden = model.generator_hidden_size or max(1, int(round(model.hidden_size * model.generator_hidden_fraction)))
    gen_layers = model.generator_num_layers or max(1, int(round(model.num_layers * model.generator_layers_fraction)))
    gen_intermediate = model.generator_intermediate_size or 4 * gen_hidden
    table_width = gen_hidden if model.get("embedding_sharing", "tied") == "untied" else model.embedding_size
    gen_encoder = encoder_forward_flops(gen_hidden, gen_layers, gen_intermediate, seq_len, table_width)
    disc_head = 2 * model.hidden_size * model.hidden_size + 2 * model.hidden_size
    if objective.kind == "electric":
        cloze_head = 2 * (2 * gen_hidden) * table_width + 2 * table_width * model.vocab_size
        return 3.0 * tokens * (2 * gen_encoder + cloze_head + disc_encoder + disc_head)
    gen_head = 2 * gen_hidden * table_width + 2 * table_width * model.vocab_size
    forward = tokens * (gen_encoder + disc_encoder + disc_head) + batch_size * slots * gen_head
    return 3.0 * forward


# ---------------------------------------------------------------------------------------------------
# The original flops_computation.py, reimplemented to reproduce the paper's FLOPs columns.


def _block_forward(h: int, s: int, i: int, kqv: int, heads: int, decoder: bool) -> float:
    """Forward FLOPs of one transformer block over a sequence, as the original counts them.

    Quirks kept on purpose: the attention-output LayerNorm is counted once per position (not per
    hidden unit), and a decoder doubles the attention part only.
    """
    attn = 2 if decoder else 1
    per_position = attn * (
        6 * h * kqv + 3 * kqv  # q, k, v projections and biases
        + 2 * kqv * s  # scores
        + (_SOFTMAX + _DROPOUT + 1) * s * heads  # softmax, dropout, scaling of the scores
        + 2 * h * s  # weighted sum of values
        + 2 * h * h + h + _DROPOUT * h + h  # output projection, bias, dropout, residual
        + _LAYER_NORM)
    per_position += (2 * h * i + _ACTIVATION * i + i  # FFN in, GELU, bias
                     + 2 * h * i + h + _DROPOUT * h + h + _LAYER_NORM * h)  # FFN out, bias, dropout, residual, LN
    return float(per_position * s)


def _input_embedding_forward(h: int, e: int, s: int, v: int, sparse_lookup: bool) -> float:
    per_position = 0 if sparse_lookup else 2 * e * v  # dense one-hot lookup
    per_position += 2 * e * (s + 2) + 2 * e + _LAYER_NORM * e + _DROPOUT * e
    if e != h:
        per_position += 2 * h * e + h  # embedding projection and its bias
    return float(per_position * s)


def _output_softmax_forward(h: int, e: int, s: int, v: int, output_frac: float) -> float:
    per_position = (2 * e * v  # logits against the table
                    + 2 * h * e + e  # the head's dense layer and bias
                    + _ACTIVATION * e + _LAYER_NORM * e + _SOFTMAX * v + 2 * v)
    return output_frac * per_position * s


def _binary_head_forward(h: int, s: int) -> float:
    return float((2 * h * h + h + _ACTIVATION * h + 2 * h) * s)


def transformer_train_flops(hidden: int, layers: int, batch_size: int, train_steps: float, *,
                            seq_len: int = 512, vocab_size: int = 30522, embedding: int | None = None,
                            intermediate: int | None = None, heads: int | None = None,
                            head_size: int | None = None, output_frac: float = 0.15625,
                            sparse_embed_lookup: bool = False, decoder: bool = False,
                            discriminator: bool = False) -> float:
    """Pre-training FLOPs of one transformer as the original counter computes them (2 x forward)."""
    embedding_width = hidden if embedding is None else embedding
    intermediate_width = 4 * hidden if intermediate is None else intermediate
    kqv = hidden if head_size is None else head_size * heads
    n_heads = max(hidden // 64, 1) if heads is None else heads
    forward = (layers * _block_forward(hidden, seq_len, intermediate_width, kqv, n_heads, decoder)
               + _input_embedding_forward(hidden, embedding_width, seq_len, vocab_size, sparse_embed_lookup))
    if discriminator:
        forward += _binary_head_forward(hidden, seq_len)
    else:
        forward += _output_softmax_forward(hidden, embedding_width, seq_len, vocab_size, output_frac)
    return 2.0 * batch_size * train_steps * forward


def electra_train_flops(disc_hidden: int, disc_layers: int, gen_hidden: int, gen_layers: int, batch_size: int,
                        train_steps: float, tied_embeddings: bool = True, embedding: int | None = None,
                        seq_len: int = 512, output_frac: float = 0.15625) -> float:
    """Generator + discriminator pre-training FLOPs (the original `get_electra_train_flops`)."""
    embedding_width = disc_hidden if embedding is None else embedding
    disc = transformer_train_flops(disc_hidden, disc_layers, batch_size, train_steps, seq_len=seq_len,
                                   embedding=embedding_width, output_frac=output_frac, discriminator=True)
    gen = transformer_train_flops(gen_hidden, gen_layers, batch_size, train_steps, seq_len=seq_len,
                                  embedding=embedding_width if tied_embeddings else None, output_frac=output_frac)
    return disc + gen


def _t5_11b() -> float:
    shape = dict(vocab_size=32000, intermediate=65536, heads=128, head_size=128)
    encoder = transformer_train_flops(1024, 24, 2048, 1e6, output_frac=0.0, **shape)
    decoder = transformer_train_flops(1024, 24, 2048, 1e6, output_frac=1.0, decoder=True, **shape)
    return encoder + decoder


# Each entry: how the original script obtains that model's total (ELMo and XLNet were measured with
# TensorFlow's profiler, so the script only scales a per-example count).
_ORIGINAL_MODELS = {
    "elmo": lambda: 2 * 10 * 768648884 * 568093262680 / (20.0 * 128),
    "xlnet": lambda: 2 * 500000 * 8192 * 15064773691518 / 32.0,
    "gpt": lambda: transformer_train_flops(768, 12, 128, 960800, vocab_size=40000, output_frac=1.0),
    "bert_small": lambda: transformer_train_flops(256, 12, 128, 1.45e6, embedding=128, seq_len=128),
    "bert_base": lambda: transformer_train_flops(768, 12, 256, 1e6),
    "bert_large": lambda: transformer_train_flops(1024, 24, 256, 1e6),
    "electra_small": lambda: electra_train_flops(256, 12, 64, 12, 128, 1e6, True, embedding=128, seq_len=128),
    "electra_base": lambda: electra_train_flops(768, 12, 256, 12, 256, 766000, True),
    "electra_400k": lambda: electra_train_flops(1024, 24, 256, 24, 2048, 400000, True),
    "electra_1.75M": lambda: electra_train_flops(1024, 24, 256, 24, 2048, 1750000, True),
    "roberta": lambda: transformer_train_flops(1024, 24, 8000, 500000, vocab_size=50265),
    "albert": lambda: transformer_train_flops(4096, 12, 4096, 1.5e6, vocab_size=30000, embedding=128),
    "t5_11b": _t5_11b,
}

ORIGINAL_MODELS = tuple(_ORIGINAL_MODELS)


def original_flops(name: str) -> float:
    """Total pre-training FLOPs of a model in the original script's table (e.g. 'electra_small')."""
    if name not in _ORIGINAL_MODELS:
        raise ValueError(f"unknown model {name!r}; the original table has {list(_ORIGINAL_MODELS)}")
    return float(_ORIGINAL_MODELS[name]())
