"""Fine-tuning end to end: layer-wise learning rates, GLUE / SQuAD / tagging runs, seeds, init from checkpoints."""

import json
import os
import shutil
import sys

import flax.linen as nn
import jax
import numpy as np
import pytest
import scipy.stats

from electra_jax import config as config_lib
from electra_jax import finetune, modeling, optim
from electra_jax.checkpoint_formats import open_checkpoint
from electra_jax.finetune import FinetuneModel
from electra_jax.finetune.glue import ClassificationHead, GlueTask
from electra_jax.tree_paths import path_name

from squad_data import CONTEXT, squad_json


def _config(task, vocab, **overrides):
    base = {"data.vocab": str(vocab), "data.max_seq_length": 32, "train.batch_size": 8, "train.eval_batch_size": 16,
            "train.epochs": 1, "train.progress": "log", "train.log_every": 5, "checkpoint.save_final": False,
            "model.num_layers": 1}  # one layer keeps compiles short; --init runs take the checkpoint's size
    base.update(overrides)
    return config_lib.load(f"configs/finetune.py:{task},tiny", base)


def _flat(tree):
    return {path_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_base_layerwise_learning_rates_match_the_original_table():
    """d = 0.8, L = 12: embeddings d^14, layer_i d^(13 - i) (top layer d^2, the kept quirk), heads 1."""
    config = config_lib.load("configs/finetune.py:sst2,base")
    assert config.optim.layerwise_lr_decay == 0.8 and config.optim.learning_rate == 1e-4
    cfg = modeling.ModelConfig.from_config(config.model)
    model = FinetuneModel(cfg, ClassificationHead(2))
    batch = {k: np.zeros((1, 8), np.int32) for k in ("input_ids", "segment_ids", "input_mask")}
    shapes = nn.unbox(jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, batch, True)["params"]))
    multipliers = _flat(optim.layerwise_lr_multipliers(shapes, cfg.num_layers, config.optim.layerwise_lr_decay))
    assert set(name.split("/")[0] for name in multipliers) == {"embeddings", "discriminator", "task_specific"}
    expected_by_prefix = {"embeddings/": 0.8 ** 14, "task_specific/": 1.0}
    expected_by_prefix.update({f"discriminator/layer_{i}/": 0.8 ** (13 - i) for i in range(12)})
    for name, value in multipliers.items():
        prefix = next(p for p in expected_by_prefix if name.startswith(p))
        assert float(value) == pytest.approx(expected_by_prefix[prefix], rel=1e-6), name
    # The rounded values of ELECTRA_REFERENCE.md section 4.
    assert round(float(multipliers["embeddings/word_embeddings"]), 3) == 0.044
    assert round(float(multipliers["discriminator/layer_0/query/kernel"]), 3) == 0.055
    assert round(float(multipliers["discriminator/layer_11/output/kernel"]), 2) == 0.64
    assert float(multipliers["task_specific/output/kernel"]) == 1.0
    large = config_lib.load("configs/finetune.py:sst2,large")
    assert large.optim.layerwise_lr_decay == 0.9 and large.optim.learning_rate == 5e-5


def test_small_model_projection_is_depth_zero():
    config = config_lib.load("configs/finetune.py:sst2,small")
    cfg = modeling.ModelConfig.from_config(config.model)
    batch = {k: np.zeros((1, 8), np.int32) for k in ("input_ids", "segment_ids", "input_mask")}
    shapes = nn.unbox(jax.eval_shape(lambda: FinetuneModel(cfg, ClassificationHead(2)).init(
        {"params": jax.random.key(0)}, batch, True)["params"]))
    multipliers = _flat(optim.layerwise_lr_multipliers(shapes, 12, 0.8))
    assert float(multipliers["discriminator/embeddings_project/kernel"]) == pytest.approx(0.8 ** 14)


def _check_results(workdir, task, metrics, seeds=()):
    """results.json as the contract describes it; metrics and events in each run folder (one per seed)."""
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert results["task"] == task and results["metrics"] == metrics
    assert [e["epoch"] for e in results["epochs"]] == list(range(1, len(results["epochs"]) + 1))
    assert set(metrics) <= set(results["best"]) and set(metrics) <= set(results["epochs"][-1]["dev"])
    for run_dir in [os.path.join(workdir, f"seed_{s}") for s in seeds] or [workdir]:
        names = os.listdir(run_dir)
        assert any(name.startswith("events.out.tfevents") for name in names) and "metrics.jsonl" in names
        assert "checkpoints" in names
    return results


@pytest.mark.parametrize("task,metrics", [pytest.param("cola", ["mcc", "accuracy"], marks=pytest.mark.slow),
                                          ("stsb", ["pearson", "spearman"])])
def test_glue_runs_end_to_end(tmp_path, shared_dir, uncased_vocab, task, metrics, monkeypatch):
    # Every scoring call's dev labels and raw predictions, to recompute the reported metrics with scipy.
    scored = []
    original_score = GlueTask.score

    def recording_score(self, data, outputs, config, output_dir=None):
        scored.append((np.asarray(data.dev["labels"]), np.asarray(outputs["predictions"])))
        return original_score(self, data, outputs, config, output_dir)

    monkeypatch.setattr(GlueTask, "score", recording_score)
    config = _config(task, uncased_vocab, **{"data.dir": str(shared_dir / "data" / "glue"),
                                             "train.max_train_examples": 64, "train.max_eval_examples": 40})
    results = finetune.train_and_evaluate(config, str(tmp_path))
    results = _check_results(tmp_path, task, metrics)
    assert results["train_examples"] == 64
    for value in results["best"].values():
        assert np.isfinite(value)
    if task == "stsb":  # "best" is the last epoch's dev metrics; correlations ignore the regression scale
        labels, predictions = scored[-1]
        assert labels.shape == predictions.shape == (40,)
        assert results["best"]["pearson"] == pytest.approx(scipy.stats.pearsonr(labels, predictions)[0], abs=1e-5)
        assert results["best"]["spearman"] == pytest.approx(scipy.stats.spearmanr(labels, predictions)[0], abs=1e-5)


def test_several_seeds_report_the_median(tmp_path, shared_dir, uncased_vocab):
    config = _config("rte", uncased_vocab, **{"data.dir": str(shared_dir / "data" / "glue" / "RTE"),
                                              "train.max_train_examples": 32, "train.max_eval_examples": 24,
                                              "train.seeds": "0,1,2"})
    results = finetune.train_and_evaluate(config, str(tmp_path))
    assert [s["seed"] for s in results["seeds"]] == [0, 1, 2]
    accuracies = [s["best"]["accuracy"] for s in results["seeds"]]
    assert results["best"]["accuracy"] == sorted(accuracies)[1]
    # Each accuracy is k / 24 for the 24 dev examples.
    assert all(abs(a * 24 - round(a * 24)) < 1e-6 for a in accuracies)
    _check_results(tmp_path, "rte", ["accuracy"], seeds=(0, 1, 2))


@pytest.mark.parametrize("task", ["squad_v1", "squad_v2"])
def test_squad_runs_end_to_end(tmp_path, uncased_vocab, task):
    v2 = task == "squad_v2"
    data = tmp_path / "data"
    data.mkdir()
    squad_json(data / "train.json", v2=v2)
    squad_json(data / "dev.json", v2=v2)
    config = _config(task, uncased_vocab, **{"data.dir": str(data), "data.max_seq_length": 48, "data.doc_stride": 16,
                                             "train.batch_size": 2, "train.epochs": 2, "qa.beam_size": 5})
    workdir = tmp_path / "run"
    results = finetune.train_and_evaluate(config, str(workdir))
    metrics = ["exact", "f1", "best_exact", "best_f1"] if v2 else ["exact", "f1"]
    _check_results(workdir, task, metrics)
    with open(workdir / "predictions.json") as f:
        predictions = json.load(f)
    assert set(predictions) == ({"q1", "q2", "q3"} if v2 else {"q1", "q2"})
    # Every prediction is a span of the context (or the original's nonce "empty").
    assert all(p in CONTEXT or p == "empty" for p in predictions.values())
    # The reported exact match, recomputed from the written predictions with the official scripts' rule.
    gold = {"q1": "France", "q2": "Denmark, Iceland and Norway", "q3": ""}
    answered = dict(predictions)
    if v2:
        null_odds = json.loads((workdir / "null_odds.json").read_text())
        answered = {q: "" if null_odds[q] > config.qa.na_threshold else p for q, p in predictions.items()}
    expected = 100.0 * np.mean([_official_normalize(answered[q]) == _official_normalize(gold[q]) for q in predictions])
    assert results["best"]["exact"] == pytest.approx(expected)


def _official_normalize(text):
    """normalize_answer of the official SQuAD evaluate scripts, written out independently of scoring.py."""
    import re
    import string

    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def test_tagging_runs_end_to_end(tmp_path, uncased_vocab):
    sentence = ("Peter NNP B-NP\nBlackburn NNP I-NP\nlives VBZ B-VP\nin IN B-PP\nthe DT B-NP\nbig JJ I-NP\n"
                "city NN I-NP\n. . O\n\n")
    (tmp_path / "train.txt").write_text(sentence * 24)
    (tmp_path / "dev.txt").write_text(sentence * 3)
    config = _config("chunk", uncased_vocab, **{"data.dir": str(tmp_path), "train.epochs": 3})
    results = finetune.train_and_evaluate(config, str(tmp_path / "run"))
    _check_results(tmp_path / "run", "chunk", ["f1", "precision", "recall"])
    # 24 copies of one sentence over 3 epochs at LR 1e-3 fit it: the 4 chunks of each dev sentence.
    assert results["best"]["f1"] > 0.5


def _pretrained(uncased_vocab):
    config = config_lib.load("configs/pretrain.py:tiny", {"data.vocab": str(uncased_vocab)})
    return modeling.init_params(config, jax.random.key(3)), config


def test_init_from_hf_folder_loads_the_discriminator(tmp_path, shared_dir, uncased_vocab):
    pytest.importorskip("safetensors")
    from electra_jax import convert

    params, config = _pretrained(uncased_vocab)
    convert.save_hf(params, config, str(tmp_path / "hf"), vocab_path=str(uncased_vocab))
    hf_folder = str(tmp_path / "hf" / "discriminator")
    checkpoint = open_checkpoint(hf_folder)
    loaded, ckpt_config, vocab = checkpoint.params, checkpoint.config, checkpoint.vocab
    assert vocab and os.path.basename(vocab) == "vocab.txt"
    model_cfg = modeling.ModelConfig.from_config(ckpt_config)
    fresh = FinetuneModel(model_cfg, ClassificationHead(2)).init(
        {"params": jax.random.key(0)}, {k: np.zeros((1, 8), np.int32) for k in ("input_ids", "segment_ids",
                                                                                  "input_mask")}, True)["params"]
    merged = _flat(finetune.merge_pretrained(fresh, loaded))
    original = _flat(params)
    for name, value in merged.items():
        if name.startswith("task_specific"):
            continue
        want = original[name]
        if name.endswith("word_embeddings"):
            value, want = value[:30522], want[:30522]
        np.testing.assert_allclose(value, want, rtol=1e-6, atol=1e-7, err_msg=name)


def test_init_from_a_lone_masked_lm_folder_warns_that_it_may_be_a_generator(tmp_path, uncased_vocab, caplog):
    """An HF ElectraForMaskedLM folder given to --init imports as a masked-LM model; if it is an ELECTRA generator
    the user almost surely meant the discriminator, so that is said (naming it when it lies beside). A `convert
    to_hf` export of a masked-LM baseline (OUT, holding generator/ alone) is that baseline: no warning."""
    pytest.importorskip("safetensors")
    from electra_jax import convert

    mlm = config_lib.load("configs/pretrain.py:tiny", {"data.vocab": str(uncased_vocab), "objective.kind": "mlm"})
    convert.save_hf(modeling.init_params(mlm, jax.random.key(3)), mlm, str(tmp_path / "mlm"),
                    vocab_path=str(uncased_vocab))
    params, electra = _pretrained(uncased_vocab)
    convert.save_hf(params, electra, str(tmp_path / "electra"), vocab_path=str(uncased_vocab))
    shutil.copytree(tmp_path / "mlm" / "generator", tmp_path / "downloaded")
    missing = tmp_path / "no_glue"
    for init, warns in ((tmp_path / "electra" / "generator", f"pass {tmp_path / 'electra' / 'discriminator'}"),
                        (tmp_path / "downloaded", "pass its discriminator (ElectraForPreTraining) folder"),
                        (tmp_path / "mlm", None), (tmp_path / "mlm" / "generator", None)):
        caplog.clear()
        with caplog.at_level("WARNING"), pytest.raises(FileNotFoundError, match="no_glue"):
            finetune.train_and_evaluate(_config("sst2", "", **{"data.dir": str(missing)}), str(tmp_path / "run"),
                                        init=str(init))
        assert (warns in caplog.text) if warns else "ElectraForMaskedLM" not in caplog.text, (init, caplog.text)


def test_a_vocabulary_of_another_size_than_the_init_table(tmp_path, shared_dir, uncased_vocab, caplog):
    """More tokens than the --init model's 30522 rows would index past the table: an error. Fewer (the 28996 of
    the cased BERT vocabulary) leave rows unread: a warning naming the counts."""
    from electra_jax import checkpoints

    params, config = _pretrained(uncased_vocab)
    checkpoints.save_params(str(tmp_path / "export"), params, config)
    bigger = tmp_path / "bigger.txt"
    bigger.write_text(uncased_vocab.read_text() + "".join(f"extra{i}\n" for i in range(10)))
    cased = shared_dir / "data" / "bert_vocab" / "cased" / "vocab.txt"
    run, init = {"data.dir": str(tmp_path / "no_glue")}, str(tmp_path / "export")
    with pytest.raises(ValueError, match="has 30532 tokens but the --init model's table has 30522"):
        finetune.train_and_evaluate(_config("sst2", bigger, **run), str(tmp_path / "run"), init=init)
    with caplog.at_level("WARNING"), pytest.raises(FileNotFoundError, match="no_glue"):
        finetune.train_and_evaluate(_config("sst2", cased, **run), str(tmp_path / "run"), init=init)
    assert "has 28996 tokens and the --init model's table 30522 rows: the last 1526 are never read" in caplog.text


@pytest.mark.slow
def test_finetune_run_from_hf_folder(tmp_path, shared_dir, uncased_vocab):
    pytest.importorskip("safetensors")
    from electra_jax import convert

    params, config = _pretrained(uncased_vocab)
    convert.save_hf(params, config, str(tmp_path / "hf"), vocab_path=str(uncased_vocab))
    hf_folder = str(tmp_path / "hf" / "discriminator")
    run_config = _config("sst2", uncased_vocab, **{"data.vocab": "", "data.dir": str(shared_dir / "data" / "glue"),
                                                   "train.max_train_examples": 32, "train.max_eval_examples": 16})
    results = finetune.train_and_evaluate(run_config, str(tmp_path / "run"), init=hf_folder)
    assert results["init"] == hf_folder
    accuracy = results["best"]["accuracy"]  # a count over the 16 dev examples
    assert abs(accuracy * 16 - round(accuracy * 16)) < 1e-6


def test_init_from_electra_jax_checkpoint(tmp_path, shared_dir, uncased_vocab):
    params, config = _pretrained(uncased_vocab)
    from electra_jax import checkpoints

    path = tmp_path / "export"
    checkpoints.save_params(str(path), params, config)
    run_config = _config("sst2", "", **{"data.dir": str(shared_dir / "data" / "glue" / "SST-2"),
                                        "train.max_train_examples": 32, "train.max_eval_examples": 16})
    results = finetune.train_and_evaluate(run_config, str(tmp_path / "run"), init=str(path))
    # The vocabulary came from the checkpoint's config.data.vocab, and the sizes from its model section.
    assert run_config.data.vocab == str(uncased_vocab)
    assert (run_config.model.num_layers, run_config.model.hidden_size) == (config.model.num_layers,
                                                                           config.model.hidden_size)
    # The accuracy is a count over the 16 dev examples.
    accuracy = results["best"]["accuracy"]
    assert abs(accuracy * 16 - round(accuracy * 16)) < 1e-6


@pytest.mark.slow  # imports TensorFlow
def test_init_from_original_tf_checkpoint_folder(tmp_path):
    """A folder holding model.ckpt-N.index is detected as a TF checkpoint; its discriminator loads by name."""
    pytest.importorskip("tensorflow")
    from tf_reference import original_tf_variables, write_tf_checkpoint

    tf_vars = original_tf_variables(301, 64, 128, 2, 256, 32, 128, 64, np.random.default_rng(0))
    write_tf_checkpoint(tf_vars, str(tmp_path / "ckpt" / "model.ckpt-20"), with_slots=False)
    checkpoint = open_checkpoint(str(tmp_path / "ckpt"))
    loaded, ckpt_config, vocab = checkpoint.params, checkpoint.config, checkpoint.vocab
    assert vocab is None
    run_config = config_lib.load("configs/finetune.py:sst2,tiny", {"data.max_seq_length": 64})
    finetune.apply_checkpoint_model(run_config, ckpt_config)
    config_lib.finalize(run_config)
    cfg = modeling.ModelConfig.from_config(run_config.model)
    assert (cfg.hidden_size, cfg.num_layers, cfg.embedding_size, cfg.vocab_size) == (128, 2, 64, 301)
    batch = {k: np.zeros((1, 8), np.int32) for k in ("input_ids", "segment_ids", "input_mask")}
    fresh = FinetuneModel(cfg, ClassificationHead(2)).init({"params": jax.random.key(0)}, batch, True)["params"]
    merged = _flat(finetune.merge_pretrained(fresh, loaded))
    np.testing.assert_array_equal(merged["embeddings/word_embeddings"][:301],
                                  tf_vars["electra/embeddings/word_embeddings"])
    np.testing.assert_array_equal(merged["discriminator/embeddings_project/kernel"],
                                  tf_vars["electra/embeddings_project/kernel"])


def test_loaded_encoder_matches_the_pretraining_discriminator(tmp_path, uncased_vocab):
    """After --init, FinetuneModel.encode equals ElectraPretrainer.discriminator_hidden of the checkpoint."""
    params, config = _pretrained(uncased_vocab)
    from electra_jax import checkpoints

    checkpoints.save_params(str(tmp_path / "export"), params, config)
    checkpoint = open_checkpoint(str(tmp_path / "export"))
    loaded, ckpt_config, vocab = checkpoint.params, checkpoint.config, checkpoint.vocab
    assert vocab == str(uncased_vocab)
    ids = np.random.RandomState(0).randint(1000, 5000, (2, 16)).astype(np.int32)
    segments, mask = np.zeros_like(ids), np.ones_like(ids)
    mask[1, 12:] = 0
    want = modeling.build_model(config).apply({"params": params}, ids, segments, mask, True,
                                              method="discriminator_hidden")
    model = FinetuneModel(modeling.ModelConfig.from_config(ckpt_config, mlm_only=False), ClassificationHead(2))
    batch = {"input_ids": ids, "segment_ids": segments, "input_mask": mask}
    merged = finetune.merge_pretrained(model.init({"params": jax.random.key(0)}, batch, True)["params"], loaded)
    got = model.apply({"params": merged}, ids, segments, mask, True, method="encode")
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)


def _numpy_encoder(p, ids, segments, mask, num_layers):
    """An independent float64 numpy forward of the discriminator encoder (post-LN BERT, erf GELU, -10000 mask)."""
    from scipy.special import erf

    def layer_norm(x, q):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * q["scale"] + q["bias"]

    e, d = p["embeddings"], p["discriminator"]
    x = e["word_embeddings"][ids] + e["token_type_embeddings"][segments] + e["position_embeddings"][None, :ids.shape[1]]
    x = layer_norm(x, e["LayerNorm"])
    if "embeddings_project" in d:
        x = x @ d["embeddings_project"]["kernel"] + d["embeddings_project"]["bias"]
    for i in range(num_layers):
        w = d[f"layer_{i}"]
        q, k, v = (np.einsum("bsh,hnd->bsnd", x, w[n]["kernel"]) + w[n]["bias"] for n in ("query", "key", "value"))
        scores = np.einsum("bqnd,bknd->bnqk", q, k) / np.sqrt(q.shape[-1]) + (1.0 - mask[:, None, None, :]) * -10000.0
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        attn = np.einsum("bnqk,bknd->bqnd", probs, v)
        attn = np.einsum("bqnd,ndh->bqh", attn, w["attention_output"]["kernel"]) + w["attention_output"]["bias"]
        x = layer_norm(attn + x, w["attention_LayerNorm"])
        h = x @ w["intermediate"]["kernel"] + w["intermediate"]["bias"]
        h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
        x = layer_norm(h @ w["output"]["kernel"] + w["output"]["bias"] + x, w["output_LayerNorm"])
    return x


def test_loaded_encoder_matches_a_numpy_forward(tmp_path, uncased_vocab):
    """The fine-tuning encoder on loaded pre-training weights equals an independent numpy forward pass.

    The weights are perturbed (LayerNorm scales/biases, all biases) so that a dropped or swapped term shows.
    """
    params, config = _pretrained(uncased_vocab)
    rng = np.random.RandomState(1)
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: np.asarray(v) + (0.1 * rng.standard_normal(v.shape).astype(np.float32)
                                      if path_name(p).endswith(("bias", "scale")) else 0.0), params)
    from electra_jax import checkpoints

    checkpoints.save_params(str(tmp_path / "export"), params, config)
    checkpoint = open_checkpoint(str(tmp_path / "export"))
    loaded, ckpt_config = checkpoint.params, checkpoint.config
    cfg = modeling.ModelConfig.from_config(ckpt_config, mlm_only=False)
    ids = np.random.RandomState(0).randint(1000, 5000, (3, 20)).astype(np.int32)
    ids[:, 0], ids[:, 9] = 101, 102  # [CLS] ... [SEP]
    segments, mask = np.zeros_like(ids), np.ones_like(ids)
    segments[:, 10:] = 1
    mask[1, 14:] = 0
    model = FinetuneModel(cfg, ClassificationHead(2))
    batch = {"input_ids": ids, "segment_ids": segments, "input_mask": mask}
    merged = finetune.merge_pretrained(model.init({"params": jax.random.key(0)}, batch, True)["params"], loaded)
    got = np.asarray(model.apply({"params": merged}, ids, segments, mask, True, method="encode"))
    want = _numpy_encoder(jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), merged), ids, segments,
                          mask.astype(np.float64), cfg.num_layers)
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], rtol=1e-4, atol=2e-5)


def test_missing_vocab_and_bad_init_messages(tmp_path, shared_dir):
    config = _config("sst2", "", **{"data.dir": str(shared_dir / "data" / "glue")})
    with pytest.raises(ValueError, match=r"no vocabulary: pass --config.data.vocab=PATH"):
        finetune.train_and_evaluate(config, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"--init=.*nothing does not exist"):
        finetune.train_and_evaluate(config, str(tmp_path), init=str(tmp_path / "nothing"))


def test_a_vocabulary_beside_init_that_is_not_the_checkpoints_warns(tmp_path, shared_dir, uncased_vocab, caplog):
    """--config.data.vocab with --init: another vocabulary's contents, or the same one read with other casing than
    the checkpoint was pre-trained with, warns (its embeddings would be read as other words); the checkpoint's own
    vocabulary under another name, with its casing, does not."""
    from electra_jax.checkpoint_formats import Checkpoint
    from electra_jax.finetune.train import _tokenizer_for

    cased = shared_dir / "data" / "bert_vocab" / "cased" / "vocab.txt"
    copy = tmp_path / "vocab.txt"
    copy.write_bytes(cased.read_bytes())
    saved = _config("sst2", str(cased), **{"data.lower_case": False})
    checkpoint = Checkpoint({}, saved, "native", str(tmp_path))
    cases = [(str(uncased_vocab), True, "differs from the vocabulary the --init checkpoint names"),
             (str(copy), True, "pre-trained with lower_case=False but this run tokenizes with "
                               "--config.data.lower_case=True"),
             (str(copy), False, None)]
    for vocab, lower_case, warning in cases:
        caplog.clear()
        with caplog.at_level("WARNING"):
            tok = _tokenizer_for(_config("sst2", vocab, **{"data.lower_case": lower_case}), checkpoint)
        assert tok.lower_case is lower_case
        assert (warning in caplog.text) if warning else "--init" not in caplog.text, (vocab, caplog.text)

    # No --config.data.vocab: the checkpoint's vocabulary and casing win, and a config that said otherwise is told.
    for lower_case, warning in [(True, "pre-trained with lower_case=False: this run tokenizes that way, not with "
                                       "config.data.lower_case=True"), (False, None)]:
        caplog.clear()
        with caplog.at_level("WARNING"):
            tok = _tokenizer_for(_config("sst2", "", **{"data.lower_case": lower_case}), checkpoint)
        assert tok.lower_case is False
        assert tok.encode("Hello") == _cased_ids(cased, ["Hello"])
        assert (warning in caplog.text) if warning else "lower_case" not in caplog.text, caplog.text

    # An uncased checkpoint with the original's tie strips accents (by hand: it lower-cases): a run that asked to
    # keep them is told the setting it gets, True, not the raw None.
    uncased = Checkpoint({}, _config("sst2", str(uncased_vocab)), "native", str(tmp_path))
    caplog.clear()
    with caplog.at_level("WARNING"):
        tok = _tokenizer_for(_config("sst2", "", **{"data.strip_accents": False}), uncased)
    assert tok.strip_accents is True
    assert ("pre-trained with strip_accents=True: this run tokenizes that way, not with "
            "config.data.strip_accents=False") in caplog.text


def _cased_ids(vocab, words: list[str]) -> list[int]:
    """The ids of whole words in a WordPiece vocab.txt, read by line number (the file's own order)."""
    lines = vocab.read_text(encoding="utf-8").splitlines()
    return [lines.index(w) for w in words]


# --- Slow: real SST-2 learning, from scratch and after a short pre-training ------------------------------------

SST2_DEV_MAJORITY = 444 / 872  # label 1 count of the dev set (PROVENANCE.md)


def _sst2_config(shared_dir, vocab, **overrides):
    values = {"data.dir": str(shared_dir / "data" / "glue" / "SST-2"), "data.max_seq_length": 64,
              "train.batch_size": 32, "train.log_every": 200, "model.num_layers": 2}
    values.update(overrides)
    return _config("sst2", vocab, **values)


@pytest.mark.slow
def test_sst2_from_scratch_beats_the_majority_class(tmp_path, shared_dir, uncased_vocab):
    """One epoch over 20k SST-2 sentences from scratch (tiny model): well above the 50.9% majority class."""
    config = _sst2_config(shared_dir, uncased_vocab, **{"train.max_train_examples": 20000})
    results = finetune.train_and_evaluate(config, str(tmp_path))
    assert results["best"]["accuracy"] > SST2_DEV_MAJORITY + 0.15


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="not a bug (docs/FINETUNE.md, 'Why the short pre-training does not "
                   "help'): 400 steps give features no better than random (frozen [CLS] probe 0.58 vs 0.60) and a "
                   "start that fine-tunes more slowly: 0.51-0.53 vs 0.71-0.75 from scratch on 4,000 examples "
                   "(3 seeds), 0.75-0.79 vs 0.79-0.81 on 20,000; ~3,000 pre-training steps (~21 min on 2 cores) "
                   "tie scratch (median 0.791 vs 0.788 on 20,000), too long for this test")
def test_short_pretraining_then_sst2(tmp_path, shared_dir, uncased_vocab):
    """Pre-train the tiny model briefly on ../shared/data/text, then fine-tune: at least as good as scratch."""
    import subprocess

    records = tmp_path / "records"
    subprocess.run([sys.executable, "-m", "electra_jax.build_data",
                    f"--input={shared_dir / 'data' / 'text' / 'wikitext-2-tokens' / 'wiki.valid.tokens'}",
                    f"--vocab={uncased_vocab}", f"--output_dir={records}", "--max_seq_length=64",
                    "--num_shards=2", "--num_processes=1"], check=True)
    pretrain_config = config_lib.load("configs/pretrain.py:tiny", {
        "data.train_files": str(records / "*.tfrecord*"), "data.max_seq_length": 64, "train.steps": 400,
        "train.batch_size": 32, "optim.warmup_steps": 40, "train.progress": "log", "checkpoint.every_steps": 400,
        "data.vocab": str(uncased_vocab)})
    from electra_jax import pretrain

    pretrain.train_and_evaluate(pretrain_config, str(tmp_path / "pretrain"))
    common = {"train.max_train_examples": 4000}
    scratch = finetune.train_and_evaluate(_sst2_config(shared_dir, uncased_vocab, **common), str(tmp_path / "s"))
    tuned = finetune.train_and_evaluate(_sst2_config(shared_dir, "", **common), str(tmp_path / "p"),
                                        init=str(tmp_path / "pretrain"))
    assert tuned["best"]["accuracy"] >= scratch["best"]["accuracy"] - 0.02
