"""TF variables in the original google-research/electra layout, written out by hand, and a real TF checkpoint of
them: the independent reference of the TF import tests (conversion and fine-tuning --init)."""

import numpy as np
import pytest


def original_tf_variables(vocab, emb, hidden, layers, inter, gen_hidden, gen_inter, pos, rng):
    """Variable name -> value in the original layout (ELECTRA_REFERENCE 7.1), written out by hand."""
    v = {}

    def add(name, *shape):
        v[name] = rng.normal(0, 0.2, shape).astype(np.float32)

    add("electra/embeddings/word_embeddings", vocab, emb)
    add("electra/embeddings/position_embeddings", pos, emb)
    add("electra/embeddings/token_type_embeddings", 2, emb)
    add("electra/embeddings/LayerNorm/gamma", emb)
    add("electra/embeddings/LayerNorm/beta", emb)
    for scope, width, ffn in (("electra", hidden, inter), ("generator", gen_hidden, gen_inter)):
        if width != emb:
            add(f"{scope}/embeddings_project/kernel", emb, width)
            add(f"{scope}/embeddings_project/bias", width)
        for i in range(layers):
            layer = f"{scope}/encoder/layer_{i}"
            for name in ("query", "key", "value"):
                add(f"{layer}/attention/self/{name}/kernel", width, width)
                add(f"{layer}/attention/self/{name}/bias", width)
            add(f"{layer}/attention/output/dense/kernel", width, width)
            add(f"{layer}/attention/output/dense/bias", width)
            add(f"{layer}/attention/output/LayerNorm/gamma", width)
            add(f"{layer}/attention/output/LayerNorm/beta", width)
            add(f"{layer}/intermediate/dense/kernel", width, ffn)
            add(f"{layer}/intermediate/dense/bias", ffn)
            add(f"{layer}/output/dense/kernel", ffn, width)
            add(f"{layer}/output/dense/bias", width)
            add(f"{layer}/output/LayerNorm/gamma", width)
            add(f"{layer}/output/LayerNorm/beta", width)
    add("discriminator_predictions/dense/kernel", hidden, hidden)
    add("discriminator_predictions/dense/bias", hidden)
    add("discriminator_predictions/dense_1/kernel", hidden, 1)
    add("discriminator_predictions/dense_1/bias", 1)
    add("generator_predictions/dense/kernel", gen_hidden, emb)
    add("generator_predictions/dense/bias", emb)
    add("generator_predictions/LayerNorm/gamma", emb)
    add("generator_predictions/LayerNorm/beta", emb)
    add("generator_predictions/output_bias", vocab)
    return v


def write_tf_checkpoint(tf_vars: dict, prefix: str, with_slots: bool = True) -> list[str]:
    tf = pytest.importorskip("tensorflow", reason="the TF checkpoint test needs tensorflow")
    slots = []
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.Variable(value, name=name) for name, value in tf_vars.items()]
        if with_slots:
            for name, value in tf_vars.items():
                for slot in ("adam_m", "adam_v"):
                    variables.append(tf.compat.v1.Variable(np.zeros_like(value), name=f"{name}/{slot}"))
                    slots.append(f"{name}/{slot}")
        variables.append(tf.compat.v1.Variable(np.int64(1234), name="global_step"))
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix)
    names = {n for n, _ in tf.train.list_variables(prefix)}
    assert "electra/encoder/layer_0/attention/self/query/kernel" in names and "global_step" in names
    return sorted(slots)
