"""Conversion against independent references: HF transformers PyTorch models, files written by HF's own
`save_pretrained`, TF variables written here in the original google-research/electra layout and loaded
into HF by a port of transformers 4's `load_tf_weights_in_electra`, and the original-equivalent tokenizer.

Everything skips without torch/transformers (the optional `[convert]` extra); the TF test needs tensorflow.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import sys
import types
import warnings
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import pytest
from hf_reference import random_hf_pair
from tf_reference import original_tf_variables, write_tf_checkpoint

from electra_jax import config as config_lib
from electra_jax import checkpoints, convert, modeling
from electra_jax.checkpoint_formats import open_checkpoint
from electra_jax.convert import cli

torch = pytest.importorskip("torch", reason="conversion tests need torch (pip install -e .[convert])")
transformers = pytest.importorskip("transformers", reason="conversion tests need transformers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _write_vocab(path: Path, size: int) -> str:
    """A WordPiece vocab.txt of exactly `size` entries: the five specials, letters, then filler words."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [".", ",", "!", "'"]
    tokens = SPECIALS + letters + [f"##{c}" for c in letters if c.isalpha()]
    tokens += [f"word{i}" for i in range(size - len(tokens))]
    assert len(tokens) == size
    path.write_text("\n".join(tokens) + "\n")
    return str(path)


def _config(emb, hidden, layers, heads, inter, gen_fraction, vocab, gen_heads=0, scan=False, untied=False,
            mlm=False):
    overrides = {
        "model.vocab_size": vocab, "model.embedding_size": emb, "model.hidden_size": hidden,
        "model.num_layers": layers, "model.num_heads": heads, "model.intermediate_size": inter,
        "model.generator_hidden_fraction": gen_fraction, "model.generator_num_heads": gen_heads,
        "model.max_position_embeddings": 64, "data.max_seq_length": 64, "model.scan_layers": scan,
        "model.untied_generator_embeddings": untied, "objective.kind": "mlm" if mlm else "electra",
    }
    return config_lib.load("configs/pretrain.py:tiny", overrides)


def _random_params(config, seed=0):
    """The model's parameter tree with every tensor random (LayerNorms and biases too) so that any mis-mapped
    tensor shows. The vocabulary padding rows stay zero: they are not part of an exported model."""
    params = modeling.param_shapes(config)  # shapes only: eager init is slow on a busy 2-core machine
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    rng = np.random.default_rng(seed)
    vocab = config.model.vocab_size
    out = []
    for path, leaf in leaves:
        value = rng.normal(0, 0.2, leaf.shape).astype(np.float32)
        name = jax.tree_util.keystr(path)
        if "word_embeddings" in name:
            value[..., vocab:, :] = 0
        elif "output_bias" in name:
            value[..., vocab:] = 0
        out.append(value)
    return jax.tree_util.tree_unflatten(treedef, out)


def _fresh_params(config, seed=0):
    """Parameters like a fresh init (normal 0.02 weights, unit LayerNorm scales, zero biases), built in numpy:
    eager flax init of the 30522-token tiny model takes many seconds on a busy 2-core machine."""
    rng = np.random.default_rng(seed)

    def init(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['scale']"):
            return np.ones(leaf.shape, np.float32)
        if name.endswith("['bias']") or name.endswith("['output_bias']"):
            return np.zeros(leaf.shape, np.float32)
        return rng.normal(0, 0.02, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(init, modeling.param_shapes(config))


def _inputs(vocab, batch=3, seq=24, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    mask[1, 15:] = 0
    mask[2, 5:] = 0
    segments = np.zeros_like(ids)
    segments[:, 10:] = 1
    return ids * mask, segments * mask, mask


def _hf_logits(model, ids, segments, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                     attention_mask=torch.tensor(mask)).logits.numpy()


@contextmanager
def _captured_transformers_log():
    """Collects every transformers log record and Python warning raised inside the block."""
    records: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("transformers")
    handler, level = Handler(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)  # load reports and tie/init notices are warnings
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield records
        records.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _load_clean(cls, folder):
    """from_pretrained that must report no missing/unexpected/mismatched keys and no tie or init warnings."""
    with _captured_transformers_log() as log:
        model, info = cls.from_pretrained(folder, output_loading_info=True, attn_implementation="eager")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        assert not info.get(key), f"{cls.__name__} from {folder}: {key} = {info.get(key)}"
    bad = [m for m in log if re.search(r"newly initialized|not used|tied|untied|missing|unexpected|mismatch", m,
                                       re.IGNORECASE)]
    assert not bad, bad
    return model.eval()


def _leaves(params):
    flat = jax.tree_util.tree_flatten_with_path(modeling.unstack_layers(jax.device_get(params)))[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


def _assert_same_params(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert sorted(la) == sorted(lb)
    for name in la:
        np.testing.assert_array_equal(la[name], lb[name], err_msg=name)


EXPORT_CASES = {
    # name: (embedding, hidden, layers, heads, inter, gen fraction, vocab, gen heads, scan, untied)
    "E!=H, 3 heads, gen 1/4, padded vocab": (32, 48, 2, 3, 80, 0.25, 1000, 0, False, False),
    "gen 1/3, 6 heads, scanned layers": (40, 96, 2, 6, 128, 1 / 3, 515, 2, True, False),
    "gen 1.0, E == H": (48, 48, 3, 4, 96, 1.0, 300, 4, False, False),
    "gen 1/4, untied generator embeddings": (32, 64, 2, 2, 128, 0.25, 300, 0, False, True),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES), ids=list(EXPORT_CASES))
def test_export_loads_cleanly_and_matches_hf_both_ways(case, tmp_path):
    emb, hidden, layers, heads, inter, frac, vocab, gen_heads, scan, untied = EXPORT_CASES[case]
    config = _config(emb, hidden, layers, heads, inter, frac, vocab, gen_heads, scan, untied)
    params = _random_params(config, seed=len(case))
    written = convert.save_hf(params, config, str(tmp_path / "hf"), vocab_path=_write_vocab(tmp_path / "v.txt", vocab))
    assert set(written) == {"discriminator", "generator"}
    disc = _load_clean(transformers.ElectraForPreTraining, written["discriminator"])
    gen = _load_clean(transformers.ElectraForMaskedLM, written["generator"])
    assert gen.config.hidden_size == config.model.generator_hidden_size
    assert gen.config.embedding_size == (gen.config.hidden_size if untied else emb)
    assert disc.config.embedding_size == emb and disc.config.hidden_size == hidden
    assert gen.config.architectures == ["ElectraForMaskedLM"]
    assert disc.config.architectures == ["ElectraForPreTraining"]
    # The tie survives loading: HF's output layer reads the generator's word table.
    assert gen.generator_lm_head.weight.data_ptr() == gen.electra.embeddings.word_embeddings.weight.data_ptr()

    ids, segments, mask = _inputs(vocab)
    valid = mask.astype(bool)
    hf_disc, hf_gen = _hf_logits(disc, ids, segments, mask), _hf_logits(gen, ids, segments, mask)
    ours_disc = np.asarray(modeling.discriminator_logits(params, config, ids, segments, mask))
    ours_gen = np.asarray(modeling.generator_logits(params, config, ids, segments, mask))
    np.testing.assert_allclose(ours_disc[valid], hf_disc[valid], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours_gen[valid], hf_gen[valid], atol=1e-5, rtol=1e-5)

    # HF -> electra_jax from the written folders: every tensor back exactly, logits equal HF's.
    back, back_config = convert.load_hf(written["discriminator"], written["generator"])
    _assert_same_params(back, params)
    np.testing.assert_allclose(np.asarray(modeling.discriminator_logits(back, back_config, ids, segments, mask))[valid],
                               hf_disc[valid], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(modeling.generator_logits(back, back_config, ids, segments, mask))[valid],
                               hf_gen[valid], atol=1e-5, rtol=1e-5)
    assert back_config.data.vocab.endswith("vocab.txt")


def test_import_of_folders_written_by_hf_save_pretrained(tmp_path):
    """HF -> electra_jax from files HF itself wrote (tied lm_head left out by HF), vs HF's own logits."""
    disc, gen, _, _ = random_hf_pair((32, 48, 2, 3, 64, 16, 1, 64, 333, False), seed=0)
    disc.save_pretrained(tmp_path / "d")
    gen.save_pretrained(tmp_path / "g")
    params, config = convert.load_hf(str(tmp_path / "d"), str(tmp_path / "g"))
    ids, segments, mask = _inputs(333)
    valid = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(modeling.discriminator_logits(params, config, ids, segments, mask))[valid],
                               _hf_logits(disc, ids, segments, mask)[valid], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(modeling.generator_logits(params, config, ids, segments, mask))[valid],
                               _hf_logits(gen, ids, segments, mask)[valid], atol=1e-5, rtol=1e-5)
    # A discriminator alone (fine-tuning): no generator in the params, and to_hf says so.
    disc_only, disc_config = convert.load_hf(str(tmp_path / "d"))
    assert not convert.has_generator(disc_only)
    vocab = _write_vocab(tmp_path / "v.txt", 333)
    with pytest.raises(ValueError, match="holds no generator.*--discriminator_only"):
        convert.save_hf(disc_only, disc_config, str(tmp_path / "out"), vocab_path=vocab)
    written = convert.save_hf(disc_only, disc_config, str(tmp_path / "out"), vocab_path=vocab,
                              discriminator_only=True)
    assert list(written) == ["discriminator"]
    _load_clean(transformers.ElectraForPreTraining, written["discriminator"])


def test_an_untied_lm_head_is_refused_and_unread_tensors_are_named(tmp_path, caplog):
    """HF lets ElectraForMaskedLM untie its output layer (tie_word_embeddings: false); electra_jax ties it to
    the word table, so importing such a folder would swap in the embeddings and change the predictions."""
    disc, gen, _, gen_cfg = random_hf_pair((32, 48, 2, 3, 64, 16, 1, 64, 333, False), seed=0)
    untied = transformers.ElectraForMaskedLM(
        transformers.ElectraConfig(**{**gen_cfg.to_dict(), "tie_word_embeddings": False})).eval()
    untied.load_state_dict(gen.state_dict())
    with torch.no_grad():
        untied.generator_lm_head.weight.copy_(torch.randn_like(untied.generator_lm_head.weight))
    # HF's own logits: the untied head really predicts something else than the tied one.
    ids, segments, mask = _inputs(333)
    assert np.max(np.abs(_hf_logits(untied, ids, segments, mask) - _hf_logits(gen, ids, segments, mask))) > 0.1
    disc.save_pretrained(tmp_path / "d")
    untied.save_pretrained(tmp_path / "g")
    with pytest.raises(ValueError, match="generator_lm_head.weight is not its word embeddings"):
        convert.load_hf(str(tmp_path / "d"), str(tmp_path / "g"))

    state = {k: v.numpy() for k, v in gen.state_dict().items()}
    disc_state = {k: v.numpy() for k, v in disc.state_dict().items()}
    without_head = {k: v for k, v in state.items() if k != "generator_lm_head.weight"}
    with pytest.raises(ValueError, match="tie_word_embeddings: false but its weights hold no generator_lm_head"):
        convert.from_hf_state_dicts(disc_state, without_head, disc.config.to_dict(),
                                    dict(gen_cfg.to_dict(), tie_word_embeddings=False))
    # A tensor the import does not read (here a task head) is named, and the rest imports as HF computes it.
    disc_state["classifier.dense.weight"] = np.zeros((48, 48), np.float32)
    with caplog.at_level("WARNING"):
        params, config = convert.from_hf_state_dicts(disc_state, state, disc.config.to_dict(), gen_cfg.to_dict())
    assert "discriminator weights hold 1 tensor(s) electra_jax does not read" in caplog.text
    assert "classifier.dense.weight" in caplog.text and "generator weights" not in caplog.text
    valid = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(modeling.generator_logits(params, config, ids, segments, mask))[valid],
                               _hf_logits(gen, ids, segments, mask)[valid], atol=1e-5, rtol=1e-5)


def test_an_export_replaces_an_earlier_one_whole_and_a_failed_one_keeps_it(tmp_path, caplog):
    """to_hf into a folder that holds an earlier export: a failed export leaves the earlier one loadable as it was;
    a masked-LM baseline's export removes the earlier pair's discriminator (a reader of OUT would pair it with the
    new generator); files no HF export writes make it refuse rather than delete them."""
    vocab = _write_vocab(tmp_path / "v.txt", 300)
    electra, mlm = _config(32, 48, 2, 3, 80, 0.25, 300), _config(32, 48, 2, 3, 80, 0.25, 300, mlm=True)
    first, second = _random_params(electra, seed=1), _random_params(mlm, seed=2)
    out = tmp_path / "hf"
    convert.save_hf(first, electra, str(out), vocab_path=vocab)
    with pytest.raises(ValueError, match="has 200 tokens but the model's vocab_size is 300"):
        convert.save_hf(second, mlm, str(out), vocab_path=_write_vocab(tmp_path / "small.txt", 200))
    back, _ = convert.load_hf(str(out / "discriminator"), str(out / "generator"))
    _assert_same_params(back, first)

    with caplog.at_level("WARNING"):
        written = convert.save_hf(second, mlm, str(out), vocab_path=vocab)
    assert list(written) == ["generator"] and sorted(p.name for p in out.iterdir()) == ["generator"]
    assert "discriminator, left by an earlier export" in caplog.text
    checkpoint = open_checkpoint(str(out))
    assert checkpoint.config.objective.kind == "mlm"
    ids, segments, mask = _inputs(300)
    valid = mask.astype(bool)
    hf_gen = _hf_logits(_load_clean(transformers.ElectraForMaskedLM, written["generator"]), ids, segments, mask)
    np.testing.assert_allclose(np.asarray(modeling.generator_logits(second, mlm, ids, segments, mask))[valid],
                               hf_gen[valid], atol=1e-5, rtol=1e-5)

    (out / "generator" / "README.md").write_text("a model card the user wrote")
    with pytest.raises(ValueError, match="holds README.md, which an HF model export does not write"):
        convert.save_hf(first, electra, str(out), vocab_path=vocab)
    assert (out / "generator" / "README.md").exists() and not (out / "discriminator").exists()


def test_folders_without_the_replaced_token_head_import_for_fine_tuning(tmp_path, caplog):
    """An HF ElectraForSequenceClassification (a fine-tuned model) and an original fine-tuned TF checkpoint keep
    the encoder but not discriminator_predictions: they import as the encoder alone, whose hidden states equal
    HF's ElectraModel, and what needs the head says so instead of failing on a missing tensor."""
    from electra_jax.finetune import merge_pretrained

    disc, _, disc_cfg, _ = random_hf_pair((32, 48, 2, 3, 64, 16, 1, 64, 333, False), seed=0)
    tuned = transformers.ElectraForSequenceClassification(
        transformers.ElectraConfig(**{**disc_cfg.to_dict(), "num_labels": 2})).eval()
    tuned.electra.load_state_dict(disc.electra.state_dict())
    tuned.save_pretrained(tmp_path / "tuned")
    with caplog.at_level("WARNING"):
        params, config = convert.load_hf(str(tmp_path / "tuned"))
    assert "no discriminator_predictions: importing the encoder alone" in caplog.text
    assert "classifier.dense.weight" in caplog.text  # the task head, named as not read
    assert sorted(params) == ["discriminator", "embeddings"]
    ids, segments, mask = _inputs(333)
    valid = mask.astype(bool)
    ours = modeling.build_model(config).apply(
        {"params": params}, *(np.asarray(x, np.int32) for x in (ids, segments, mask)), True,
        method=modeling.ElectraPretrainer.discriminator_hidden)
    with torch.no_grad():
        theirs = disc.electra(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(segments),
                              attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    np.testing.assert_allclose(np.asarray(ours)[valid], theirs[valid], atol=1e-5, rtol=1e-5)
    fresh = jax.tree_util.tree_map(np.zeros_like, params)
    assert sorted(merge_pretrained(fresh, params)) == ["discriminator", "embeddings"]
    with pytest.raises(ValueError, match="no replaced-token head: an ElectraModel or fine-tuned import"):
        modeling.discriminator_logits(params, config, ids)
    with pytest.raises(ValueError, match="no replaced-token head: an ElectraModel or fine-tuned import"):
        convert.save_hf(params, config, str(tmp_path / "out"), vocab_path=_write_vocab(tmp_path / "v.txt", 333),
                        discriminator_only=True)

    tf_vars = original_tf_variables(200, 32, 64, 1, 128, 64, 256, 64, np.random.default_rng(1))
    tf_vars = {k: v for k, v in tf_vars.items() if k.startswith("electra/")}
    tf_vars["task_specific/classify/output_weights"] = np.zeros((2, 64), np.float32)
    write_tf_checkpoint(tf_vars, str(tmp_path / "tf" / "model.ckpt"), with_slots=False)
    params, config, report = convert.from_tf_checkpoint(str(tmp_path / "tf" / "model.ckpt"))
    assert sorted(params) == ["discriminator", "embeddings"]
    assert report.unknown == ["task_specific/classify/output_weights"]
    assert any("no discriminator_predictions" in note for note in report.notes)
    np.testing.assert_array_equal(params["embeddings"]["word_embeddings"][:200],
                                  tf_vars["electra/embeddings/word_embeddings"])
    # finetune --init and predict open it through open_checkpoint, whose log says what was left out.
    with caplog.at_level("INFO"):
        assert sorted(open_checkpoint(str(tmp_path / "tf")).params) == ["discriminator", "embeddings"]
    assert ("variables at global_step 1234; not imported: 0 optimizer slots, 1 unknown variables (e.g. "
            "task_specific/classify/output_weights); no generator") in caplog.text
    assert "; no discriminator_predictions: the encoder alone" in caplog.text
    assert f"read the TF checkpoint {tmp_path / 'tf' / 'model.ckpt'}: {len(report.loaded)} variables" in caplog.text


def _accented_vocab(path: Path, size: int = 333) -> str:
    """_write_vocab's tokens with German and French words, accented and not, at the end."""
    words = ["über", "uber", "straße", "strasse", "café", "cafe", "müller", "muller", "##ü", "##é", "ü", "é"]
    vocab = _write_vocab(path, size - len(words))
    with open(vocab, "a") as f:
        f.write("\n".join(words) + "\n")
    return vocab


def test_an_uncased_folder_that_keeps_accents_tokenizes_as_hf_through_fine_tuning_and_export(tmp_path, caplog):
    """An HF folder whose tokenizer_config.json says do_lower_case: true, strip_accents: false (as published
    German ELECTRAs do): finetune --init, predict and a to_hf export of it tokenize as HF's AutoTokenizer of the
    folder, not with the original's tie (which strips 'über' to 'uber')."""
    from electra_jax import predict
    from electra_jax.finetune.train import _tokenizer_for

    vocab = _accented_vocab(tmp_path / "v.txt")
    disc, _, _, _ = random_hf_pair((32, 48, 2, 3, 64, 16, 1, 64, 333, False), seed=0)
    disc.save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "vocab.txt").write_text(Path(vocab).read_text())
    (tmp_path / "d" / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "ElectraTokenizer", "do_lower_case": True, "strip_accents": False}))
    text = ["Über die Straße, Café Müller!", "uber cafe MULLER über"]
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "d"))
    want = hf(text, add_special_tokens=False)["input_ids"]
    tied = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "d"), strip_accents=None)
    assert tied(text, add_special_tokens=False)["input_ids"] != want  # the setting matters for this text

    checkpoint = open_checkpoint(str(tmp_path / "d"))
    assert (checkpoint.lower_case, checkpoint.strip_accents) == (True, False)
    finetune_config = config_lib.load("configs/finetune.py:sst2,tiny", {"data.vocab": ""})
    assert finetune_config.data.strip_accents is None  # the default: the original's tie
    assert _tokenizer_for(finetune_config, checkpoint).encode_batch(text) == want
    assert finetune_config.data.strip_accents is False  # recorded in the fine-tuned run's config
    assert predict.load_tokenizer(checkpoint.config).encode_batch(text) == want
    # The same vocabulary given beside --init with the default setting: told that it strips what was kept.
    beside = config_lib.load("configs/finetune.py:sst2,tiny", {"data.vocab": str(tmp_path / "d" / "vocab.txt")})
    with caplog.at_level("WARNING"):
        assert _tokenizer_for(beside, checkpoint).encode_batch(text) != want
    assert ("pre-trained with strip_accents=False but this run tokenizes with strip_accents=True; pass "
            "--config.data.strip_accents=False") in caplog.text

    for kind in ("BertTokenizer", "PreTrainedTokenizerFast"):  # vocab.txt rebuilt by HF, or tokenizer.json as is
        out = convert.save_hf(checkpoint.params, checkpoint.config, str(tmp_path / kind), discriminator_only=True,
                              tokenizer_class=kind)["discriminator"]
        exported = json.loads((Path(out) / "tokenizer_config.json").read_text())
        assert (exported["do_lower_case"], exported["strip_accents"]) == (True, False)
        assert transformers.AutoTokenizer.from_pretrained(out)(text, add_special_tokens=False)["input_ids"] == want


def test_a_folder_saved_whole_by_transformers_reads_its_vocabulary_from_tokenizer_json(tmp_path):
    """transformers 5's save_pretrained writes tokenizer.json and tokenizer_config.json but no vocab.txt: the
    import reads the WordPiece vocabulary from tokenizer.json (in id order), fine-tuning tokenizes as HF's
    AutoTokenizer of the folder, and a to_hf export writes that vocabulary as vocab.txt."""
    from electra_jax.data import tokenization
    from electra_jax.finetune.train import _tokenizer_for

    (tmp_path / "v").mkdir()
    vocab = _accented_vocab(tmp_path / "v" / "vocab.txt")
    disc, _, _, _ = random_hf_pair((32, 48, 2, 3, 64, 16, 1, 64, 333, False), seed=0)
    disc.save_pretrained(tmp_path / "d")
    transformers.BertTokenizer.from_pretrained(str(tmp_path / "v"), do_lower_case=True, strip_accents=False
                                               ).save_pretrained(tmp_path / "d")
    (tmp_path / "d" / "vocab.txt").unlink(missing_ok=True)  # as transformers 5 leaves it (older versions wrote one)
    text = ["Über die Straße, Café Müller!", "uber cafe MULLER über straße"]
    want = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "d"))(text, add_special_tokens=False)["input_ids"]

    checkpoint = open_checkpoint(str(tmp_path / "d"))
    assert checkpoint.vocab == str(tmp_path / "d" / "tokenizer.json") and checkpoint.strip_accents is False
    tok = _tokenizer_for(config_lib.load("configs/finetune.py:sst2,tiny", {"data.vocab": ""}), checkpoint)
    assert tok.vocab_size == 333 and tok.encode_batch(text) == want
    out = convert.save_hf(checkpoint.params, checkpoint.config, str(tmp_path / "out"),
                          discriminator_only=True)["discriminator"]
    assert (Path(out) / "vocab.txt").read_text(encoding="utf-8") == Path(vocab).read_text(encoding="utf-8")
    assert transformers.AutoTokenizer.from_pretrained(out)(text, add_special_tokens=False)["input_ids"] == want

    spec = json.loads((tmp_path / "d" / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"] = {"type": "Unigram", "vocab": [["[PAD]", 0.0]]}
    (tmp_path / "unigram.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="holds a Unigram model, not WordPiece"):
        tokenization.tokenizer(tmp_path / "unigram.json")


def test_a_folder_whose_tokenizer_json_is_not_wordpiece_or_loads_as_written(tmp_path, caplog, capsys):
    """A folder whose only tokenizer is a Unigram tokenizer.json imports with no vocabulary (and says so) instead
    of failing on it; a PreTrainedTokenizerFast folder, which HF loads from tokenizer.json as written, takes its
    casing from the BertNormalizer there, as HF's AutoTokenizer does (a BertTokenizer folder lower-cases unless
    tokenizer_config.json says do_lower_case: false, whatever tokenizer.json's normalizer says). HF tokenizes a
    PreTrainedTokenizerFast folder with tokenizer.json even beside a vocab.txt that differs, and so does the import."""
    from electra_jax.finetune.train import _tokenizer_for

    (tmp_path / "v").mkdir()
    _accented_vocab(tmp_path / "v" / "vocab.txt")
    disc, _, _, _ = random_hf_pair((32, 48, 2, 3, 64, 16, 1, 64, 333, False), seed=0)
    text = ["Über die Straße, Café Müller!", "uber cafe MULLER über straße"]
    for name, cls in (("fast", "PreTrainedTokenizerFast"), ("bert", "BertTokenizer")):
        disc.save_pretrained(tmp_path / name)
        transformers.BertTokenizer.from_pretrained(str(tmp_path / "v"), do_lower_case=False, strip_accents=False
                                                   ).save_pretrained(tmp_path / name)
        (tmp_path / name / "vocab.txt").unlink(missing_ok=True)
        if name == "fast":  # a vocab.txt beside tokenizer.json that is not its vocabulary: HF reads tokenizer.json
            swapped = (tmp_path / "v" / "vocab.txt").read_text(encoding="utf-8").replace("über\n", "@\n").replace(
                "müller\n", "über\n").replace("@\n", "müller\n")
            (tmp_path / name / "vocab.txt").write_text(swapped, encoding="utf-8")
        settings = json.loads((tmp_path / name / "tokenizer_config.json").read_text())
        settings = {k: v for k, v in settings.items() if k not in ("do_lower_case", "strip_accents")}
        (tmp_path / name / "tokenizer_config.json").write_text(json.dumps(dict(settings, tokenizer_class=cls)))
        hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / name))
        want = hf(text, add_special_tokens=False)["input_ids"]
        checkpoint = open_checkpoint(str(tmp_path / name))
        assert (checkpoint.lower_case, checkpoint.strip_accents) == ((False, False) if name == "fast" else (True, None))
        assert checkpoint.vocab == str(tmp_path / name / "tokenizer.json")
        tok = _tokenizer_for(config_lib.load("configs/finetune.py:sst2,tiny", {"data.vocab": ""}), checkpoint)
        assert tok.encode_batch(text) == want
    assert want != transformers.AutoTokenizer.from_pretrained(str(tmp_path / "fast"))(
        text, add_special_tokens=False)["input_ids"]  # the two folders' tokenizers differ on this text

    spec = json.loads((tmp_path / "fast" / "tokenizer.json").read_text(encoding="utf-8"))
    spec["model"] = {"type": "Unigram", "unk_id": 0, "vocab": [["[PAD]", 0.0], ["a", -1.0]]}
    (tmp_path / "fast" / "tokenizer.json").write_text(json.dumps(spec))
    (tmp_path / "fast" / "vocab.txt").unlink()
    with caplog.at_level("WARNING"):
        cli.run("from_hf", _flags(input=str(tmp_path / "fast"), output_dir=str(tmp_path / "back")))
    assert "holds a Unigram model, not a WordPiece vocabulary: no vocabulary imported" in caplog.text
    assert "(no vocabulary found in the HF folder)" in capsys.readouterr().out
    assert checkpoints.restore_params(str(tmp_path / "back"))[1].data.vocab == ""


def test_bfloat16_export_and_parity_check(tmp_path, capsys):
    config = _config(32, 48, 2, 3, 80, 0.25, 400)
    params = _random_params(config)
    vocab = _write_vocab(tmp_path / "v.txt", 400)
    out = tmp_path / "bf16"
    convert.save_hf(params, config, str(out), vocab_path=vocab, dtype="bfloat16")
    from safetensors import safe_open

    with safe_open(str(out / "discriminator" / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.bfloat16 for k in f.keys())
    assert json.loads((out / "generator" / "config.json").read_text())["dtype"] == "bfloat16"
    _load_clean(transformers.ElectraForMaskedLM, str(out / "generator"))
    diffs = convert.check_parity(params, config, str(out))
    assert 0 < diffs["discriminator"] and 0 < diffs["generator"]  # bf16 rounding shows, within tolerance

    f32 = tmp_path / "f32"
    convert.save_hf(params, config, str(f32), vocab_path=vocab)
    assert max(convert.check_parity(params, config, str(f32)).values()) < 1e-5
    assert "discriminator: max |logit difference|" in capsys.readouterr().out
    # A corrupted export fails the check with a message naming the network.
    from safetensors.numpy import load_file, save_file

    path = f32 / "generator" / "model.safetensors"
    tensors = load_file(str(path))
    tensors["generator_predictions.dense.bias"] = tensors["generator_predictions.dense.bias"] + 0.1
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="parity check failed: generator differs"):
        convert.check_parity(params, config, str(f32))


def test_masked_lm_baseline_exports_one_masked_lm(tmp_path):
    config = _config(32, 48, 2, 3, 80, 0.25, 300, mlm=True)
    params = _random_params(config)
    written = convert.save_hf(params, config, str(tmp_path / "hf"), vocab_path=_write_vocab(tmp_path / "v.txt", 300))
    assert list(written) == ["generator"]
    gen = _load_clean(transformers.ElectraForMaskedLM, written["generator"])
    assert gen.config.hidden_size == 48
    ids, segments, mask = _inputs(300)
    valid = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(modeling.generator_logits(params, config, ids, segments, mask))[valid],
                               _hf_logits(gen, ids, segments, mask)[valid], atol=1e-5, rtol=1e-5)
    back, back_config = convert.load_hf(written["generator"])
    assert back_config.objective.kind == "mlm"
    _assert_same_params(back, params)


# ------------------------------------------------------------------------------------------------
# Original TF checkpoints


def _load_tf_weights_like_transformers4(model, tf_vars: dict, which: str):
    """A port of transformers 4's `load_tf_weights_in_electra` (removed in v5): the reference TF->PT path."""
    for original, array in tf_vars.items():
        name = original
        if isinstance(model, transformers.ElectraForMaskedLM):
            name = name.replace("electra/embeddings/", "generator/embeddings/")
        if which == "generator":
            name = name.replace("electra/", "discriminator/").replace("generator/", "electra/")
        name = name.replace("dense_1", "dense_prediction").replace("generator_predictions/output_bias",
                                                                    "generator_lm_head/bias")
        parts = name.split("/")
        if any(n in ("global_step", "temperature") for n in parts):
            continue
        pointer = model
        try:
            for m_name in parts:
                scope = re.split(r"_(\d+)", m_name) if re.fullmatch(r"[A-Za-z]+_\d+", m_name) else [m_name]
                if scope[0] in ("kernel", "gamma"):
                    pointer = pointer.weight
                elif scope[0] in ("output_bias", "beta"):
                    pointer = pointer.bias
                else:
                    pointer = getattr(pointer, scope[0])
                if len(scope) >= 2:
                    pointer = pointer[int(scope[1])]
            if m_name.endswith("_embeddings"):
                pointer = pointer.weight
            elif m_name == "kernel":
                array = np.transpose(array)
        except AttributeError:  # adam slots, the other network, the other head
            continue
        assert tuple(pointer.shape) == array.shape, original
        pointer.data = torch.from_numpy(np.ascontiguousarray(array))


def test_original_tf_checkpoint_imports_like_the_hf_tf_loader(tmp_path, capsys):
    vocab, emb, hidden, layers, inter, gen_hidden, gen_inter, pos = 301, 64, 128, 2, 256, 32, 128, 64
    tf_vars = original_tf_variables(vocab, emb, hidden, layers, inter, gen_hidden, gen_inter, pos,
                                     np.random.default_rng(0))
    tf_vars["task_specific/sst2/dense/kernel"] = np.ones((hidden, 2), np.float32)  # unknown: must be reported
    slots = write_tf_checkpoint(tf_vars, str(tmp_path / "ckpt" / "model.ckpt-1234"))
    params, config, report = convert.from_tf_checkpoint(str(tmp_path / "ckpt"))
    assert report.optimizer_slots == slots and len(slots) == 2 * len(tf_vars)
    assert report.global_step == 1234
    assert report.unknown == ["task_specific/sst2/dense/kernel"]
    assert "electra/encoder/layer_0/attention/self/query/kernel/adam_m" in report.summary()
    m = config.model
    assert (m.hidden_size, m.num_heads, m.generator_hidden_size, m.generator_num_heads) == (128, 2, 32, 1)
    assert (m.embedding_size, m.vocab_size, m.num_layers, m.generator_num_layers) == (64, 301, 2, 2)
    assert not m.untied_generator_embeddings

    common = dict(vocab_size=vocab, embedding_size=emb, max_position_embeddings=pos, num_hidden_layers=layers,
                  attn_implementation="eager")
    disc = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        hidden_size=hidden, num_attention_heads=2, intermediate_size=inter, **common)).eval()
    gen = transformers.ElectraForMaskedLM(transformers.ElectraConfig(
        hidden_size=gen_hidden, num_attention_heads=1, intermediate_size=gen_inter, **common)).eval()
    _load_tf_weights_like_transformers4(disc, tf_vars, "discriminator")
    _load_tf_weights_like_transformers4(gen, tf_vars, "generator")
    ids, segments, mask = _inputs(vocab)
    valid = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(modeling.discriminator_logits(params, config, ids, segments, mask))[valid],
                               _hf_logits(disc, ids, segments, mask)[valid], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(modeling.generator_logits(params, config, ids, segments, mask))[valid],
                               _hf_logits(gen, ids, segments, mask)[valid], atol=1e-5, rtol=1e-5)

    # The command prints the report and writes a params-only checkpoint that restore_params reads.
    cli.run("from_tf", _flags(input=str(tmp_path / "ckpt" / "model.ckpt-1234"), output_dir=str(tmp_path / "o")))
    out = capsys.readouterr().out
    assert f"optimizer slots not imported (optimizer state starts fresh): {len(slots)}" in out
    assert "unknown variables not imported: 1" in out and "global_step: 1234" in out
    restored, restored_config = checkpoints.restore_params(str(tmp_path / "o"))
    _assert_same_params(restored, params)
    assert restored_config.model.generator_hidden_size == 32


def test_tf_checkpoint_untied_and_discriminator_only(tmp_path):
    rng = np.random.default_rng(1)
    tf_vars = original_tf_variables(200, 32, 64, 1, 128, 64, 256, 64, rng)
    # Untied: the generator has its own embeddings of its width (and then no projection).
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        rows = tf_vars[f"electra/embeddings/{name}"].shape[0]
        tf_vars[f"generator/embeddings/{name}"] = rng.normal(0, 0.2, (rows, 64)).astype(np.float32)
    tf_vars["generator/embeddings/LayerNorm/gamma"] = np.ones(64, np.float32)
    tf_vars["generator/embeddings/LayerNorm/beta"] = np.zeros(64, np.float32)
    del tf_vars["generator/embeddings_project/kernel"], tf_vars["generator/embeddings_project/bias"]
    tf_vars["generator_predictions/dense/kernel"] = rng.normal(0, 0.2, (64, 64)).astype(np.float32)
    tf_vars["generator_predictions/dense/bias"] = np.zeros(64, np.float32)
    tf_vars["generator_predictions/LayerNorm/gamma"] = np.ones(64, np.float32)
    tf_vars["generator_predictions/LayerNorm/beta"] = np.zeros(64, np.float32)
    write_tf_checkpoint(tf_vars, str(tmp_path / "u" / "model.ckpt"), with_slots=False)
    params, config, report = convert.from_tf_checkpoint(str(tmp_path / "u" / "model.ckpt"))
    assert config.model.untied_generator_embeddings and config.model.generator_hidden_size == 64
    assert not report.unknown and not report.optimizer_slots
    np.testing.assert_array_equal(params["generator_embeddings"]["word_embeddings"][:200],
                                  tf_vars["generator/embeddings/word_embeddings"])
    ids, _, _ = _inputs(200)
    assert np.isfinite(np.asarray(modeling.generator_logits(params, config, ids))).all()

    disc_only = {k: v for k, v in tf_vars.items() if not k.startswith("generator")}
    write_tf_checkpoint(disc_only, str(tmp_path / "d" / "model.ckpt"), with_slots=False)
    params, _, report = convert.from_tf_checkpoint(str(tmp_path / "d" / "model.ckpt"))
    assert not convert.has_generator(params) and "discriminator only" in report.summary()


def test_a_tf_checkpoint_beside_a_cased_vocabulary_imports_as_cased(tmp_path, capsys):
    """A TF checkpoint does not record its casing: a vocabulary holding upper-case tokens (which a lower-casing
    tokenizer never produces, so the model was trained cased) makes the import cased, with a note; the BERT
    uncased vocabulary and a vocabulary-less import keep the original's lower-casing; from_tf --lower_case says."""
    tf_vars = original_tf_variables(200, 32, 64, 1, 128, 64, 256, 64, np.random.default_rng(1))
    write_tf_checkpoint(tf_vars, str(tmp_path / "tf" / "model.ckpt"), with_slots=False)
    cased = SPECIALS + ["The", "Paris", "the", "##s"] + [f"w{i}" for i in range(191)]
    (tmp_path / "tf" / "vocab.txt").write_text("\n".join(cased) + "\n")
    checkpoint = open_checkpoint(str(tmp_path / "tf"))
    assert checkpoint.lower_case is False
    assert any("holds upper-case tokens (2 of 195: 'The', 'Paris'): read as a cased model" in note
               for note in checkpoint.report.notes)
    uncased = SPECIALS + ["the", "paris", "##s"] + [f"w{i}" for i in range(192)]
    (tmp_path / "tf" / "vocab.txt").write_text("\n".join(uncased) + "\n")
    assert open_checkpoint(str(tmp_path / "tf")).lower_case is True
    # One stray upper-case token among 1,000 (under 0.5%): still the original's lower-casing, and the note says so.
    stray = SPECIALS + ["Zürich"] + [f"w{i}" for i in range(999)]
    (tmp_path / "tf" / "vocab.txt").write_text("\n".join(stray) + "\n")
    checkpoint = open_checkpoint(str(tmp_path / "tf"))
    assert checkpoint.lower_case is True
    assert any("holds 1 upper-case token(s) of 1000 ('Zürich'), too few for a cased vocabulary" in note
               for note in checkpoint.report.notes)
    (tmp_path / "tf" / "vocab.txt").unlink()
    assert open_checkpoint(str(tmp_path / "tf")).lower_case is True

    (tmp_path / "cased.txt").write_text("\n".join(cased) + "\n")
    for lower_case, expected in ((None, False), (True, True)):
        out = tmp_path / f"out_{lower_case}"
        cli.run("from_tf", _flags(input=str(tmp_path / "tf"), output_dir=str(out), vocab=str(tmp_path / "cased.txt"),
                                  lower_case=lower_case))
        assert checkpoints.restore_params(str(out))[1].data.lower_case is expected
        assert ("read as a cased model" in capsys.readouterr().out) is (lower_case is None)


# ------------------------------------------------------------------------------------------------
# Errors a user can act on


def test_errors_name_the_problem(tmp_path):
    config = _config(32, 48, 2, 3, 80, 0.25, 300)
    params = _random_params(config)
    disc_sd, gen_sd, (disc_cfg, gen_cfg) = convert.to_hf_state_dicts(params, config)

    bad = dict(disc_sd)
    bad["electra.encoder.layer.1.intermediate.dense.weight"] = np.zeros((81, 48), np.float32)
    with pytest.raises(ValueError, match=r"layer\.1\.intermediate\.dense\.weight: shape \(81, 48\) does not match "
                                         r"the expected \(80, 48\)"):
        convert.from_hf_state_dicts(bad, gen_sd, disc_cfg, gen_cfg)

    other = dict(gen_sd)
    other["electra.embeddings.LayerNorm.bias"] = other["electra.embeddings.LayerNorm.bias"] + 1
    with pytest.raises(ValueError, match="generator's electra.embeddings.LayerNorm.bias differs from the "
                                         "discriminator's"):
        convert.from_hf_state_dicts(disc_sd, other, disc_cfg, gen_cfg)
    for key, value in (("layer_norm_eps", 1e-5), ("max_position_embeddings", 128), ("hidden_act", "relu")):
        with pytest.raises(ValueError, match=f"the generator's {key} .* differs from the discriminator's"):
            convert.from_hf_state_dicts(disc_sd, gen_sd, disc_cfg, dict(gen_cfg, **{key: value}))

    with pytest.raises(ValueError, match="has 301 tokens but the model's vocab_size is 300"):
        convert.save_hf(params, config, str(tmp_path / "o"), vocab_path=_write_vocab(tmp_path / "v.txt", 301))
    assert not (tmp_path / "o" / "discriminator" / "model.safetensors").exists()

    with pytest.raises(ValueError, match="no vocabulary found.*--vocab"):
        convert.save_hf(params, config, str(tmp_path / "o"))

    config.data.vocab = str(tmp_path / "gone.txt")
    with pytest.raises(FileNotFoundError, match="gone.txt does not exist here; pass --vocab"):
        convert.save_hf(params, config, str(tmp_path / "o"))

    with pytest.raises(FileNotFoundError, match="holds no config.json: not an HF model folder"):
        convert.load_hf(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(disc_cfg))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        convert.load_hf(str(tmp_path))


# ------------------------------------------------------------------------------------------------
# Tokenizer files


def _sst2_sentences(shared_dir, n=300):
    with open(shared_dir / "data" / "glue" / "SST-2" / "dev.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows[:n]]


def test_exported_wordpiece_tokenizer_equals_electra_jax(shared_dir, uncased_vocab, tmp_path):
    from electra_jax.data import tokenizer

    ours = tokenizer(str(uncased_vocab), lower_case=True)
    sentences = _sst2_sentences(shared_dir)
    # (Not a word-final capital sigma: electra_jax lower-cases it to 'ς' as Python does, HF's Rust to 'σ'.)
    sentences += ["Héllo Wörld, naïve CAFÉ!", "北京欢迎你 and ÀÉÎÕÜ"]
    convert.write_tokenizer_files(str(uncased_vocab), str(tmp_path / "bert"), 30522, True, 512)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "bert"))
    assert hf.model_max_length == 512 and hf.do_lower_case
    for text in sentences:
        assert hf(text)["input_ids"] == [ours.cls_id] + ours.encode(text) + [ours.sep_id], text
    # The original allows 200-character words; PreTrainedTokenizerFast keeps that from tokenizer.json.
    convert.write_tokenizer_files(str(uncased_vocab), str(tmp_path / "fast"), 30522, True, 512,
                                  tokenizer_class="PreTrainedTokenizerFast")
    fast = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "fast"))
    long_word = "pneumono" * 19  # 152 characters: [UNK] under HF's default limit of 100
    for text in sentences[:50] + [f"a {long_word} b"]:
        assert fast(text)["input_ids"] == [ours.cls_id] + ours.encode(text) + [ours.sep_id], text
    assert fast.pad_token_id == ours.pad_id and fast.mask_token_id == ours.mask_id


def test_exported_sentencepiece_tokenizer_equals_electra_jax(shared_dir, tmp_path):
    pytest.importorskip("sentencepiece")
    from electra_jax.build_vocab import train_sentencepiece
    from electra_jax.data import tokenizer

    corpus = shared_dir / "data" / "text" / "wikitext-2-tokens" / "wiki.valid.tokens"
    model = train_sentencepiece([str(corpus)], 800, str(tmp_path / "sp.model"), lower_case=True,
                                input_sentence_size=20000)
    ours = tokenizer(model, lower_case=True)
    convert.write_tokenizer_files(model, str(tmp_path / "hf"), ours.vocab_size, True, 128)
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for text in _sst2_sentences(shared_dir, 200) + ["  Leading and   repeated   spaces  ", "Ünïcödé ﬁ ligature"]:
        assert hf(text)["input_ids"] == [ours.cls_id] + ours.encode(text) + [ours.sep_id], text


# ------------------------------------------------------------------------------------------------
# The command line and a training-system checkpoint fine-tuned in PyTorch


def _flags(**values):
    defaults = dict(checkpoint=None, output_dir=None, dtype="float32", vocab=None, tokenizer_class="BertTokenizer",
                    discriminator_only=False, input=None, generator=None, hf_dir=None, check=False, tolerance=None,
                    num_heads=None, generator_num_heads=None, lower_case=None)
    defaults.update(values)
    return types.SimpleNamespace(**defaults)


def test_commands_round_trip_through_checkpoints(uncased_vocab, tmp_path, capsys):
    config = config_lib.load("configs/pretrain.py:tiny", {"model.num_layers": 1})
    params = _random_params(config)
    checkpoints.save_params(str(tmp_path / "ckpt"), params, config)
    cli.run("to_hf", _flags(checkpoint=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "hf"),
                                vocab=str(uncased_vocab), check=True))
    out = capsys.readouterr().out
    assert "wrote discriminator" in out and "generator: max |logit difference|" in out
    cli.run("from_hf", _flags(input=str(tmp_path / "hf" / "discriminator"),
                                  generator=str(tmp_path / "hf" / "generator"), output_dir=str(tmp_path / "back")))
    back, back_config = checkpoints.restore_params(str(tmp_path / "back"))
    _assert_same_params(back, params)
    assert Path(back_config.data.vocab) == (tmp_path / "back" / "vocab.txt").resolve()
    cli.run("check", _flags(checkpoint=str(tmp_path / "back"), hf_dir=str(tmp_path / "hf")))


def test_imports_refuse_a_pretraining_workdir_and_a_vocabulary_larger_than_the_table(tmp_path, caplog):
    """from_hf/from_tf write a params export, which readers of a folder take before its latest step: into a
    pre-training workdir it would hide the run's own checkpoints. A --vocab with more tokens than the table has
    rows would give ids past its end; fewer rows read are a warning (published folders pad tables)."""
    tf_vars = original_tf_variables(200, 32, 64, 1, 128, 64, 256, 64, np.random.default_rng(1))
    write_tf_checkpoint(tf_vars, str(tmp_path / "tf" / "model.ckpt"), with_slots=False)
    workdir = tmp_path / "run"
    (workdir / checkpoints.CHECKPOINTS_SUBDIR / "40" / checkpoints.STATE_ITEM).mkdir(parents=True)
    for command in ("from_tf", "from_hf"):
        with pytest.raises(ValueError, match="holds pre-training checkpoints"):
            cli.run(command, _flags(input=str(tmp_path / "tf"), output_dir=str(workdir)))
    assert sorted(p.name for p in workdir.iterdir()) == [checkpoints.CHECKPOINTS_SUBDIR]

    with pytest.raises(ValueError, match="has 300 tokens but the checkpoint's embedding table has 200 rows"):
        cli.run("from_tf", _flags(input=str(tmp_path / "tf"), output_dir=str(tmp_path / "o"),
                                  vocab=_write_vocab(tmp_path / "big.txt", 300)))
    assert not (tmp_path / "o").exists()
    with caplog.at_level("WARNING"):
        cli.run("from_tf", _flags(input=str(tmp_path / "tf"), output_dir=str(tmp_path / "o"),
                                  vocab=_write_vocab(tmp_path / "small.txt", 150)))
    assert "has 150 tokens and the checkpoint's embedding table 200 rows" in caplog.text
    assert checkpoints.restore_params(str(tmp_path / "o"))[1].model.vocab_size == 200


@pytest.mark.parametrize("given", ["out", "discriminator"])
def test_from_hf_of_a_to_hf_export_brings_both_networks_for_continued_pre_training(uncased_vocab, tmp_path, capsys,
                                                                                   given):
    """`from_hf --input=OUT` (the folder `to_hf` wrote) or `--input=OUT/discriminator` alone imports the generator
    beside it too, as `finetune --init` reads such folders, so `pretrain --config.checkpoint.init` accepts it."""
    from electra_jax.train_state import check_params_match

    config = config_lib.load("configs/pretrain.py:tiny", {"model.num_layers": 1})
    params = _random_params(config)
    checkpoints.save_params(str(tmp_path / "ckpt"), params, config)
    cli.run("to_hf", _flags(checkpoint=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "hf"),
                            vocab=str(uncased_vocab)))
    source = tmp_path / "hf" if given == "out" else tmp_path / "hf" / "discriminator"
    cli.run("from_hf", _flags(input=str(source), output_dir=str(tmp_path / "back")))
    assert "wrote discriminator + generator" in capsys.readouterr().out
    back, _ = checkpoints.restore_params(str(tmp_path / "back"))
    _assert_same_params(back, params)
    check_params_match(back, params)  # what pre-training's checkpoint.init checks; raises on a missing generator


def test_from_hf_of_a_lone_discriminator_says_what_continued_pre_training_needs(uncased_vocab, tmp_path, capsys):
    config = config_lib.load("configs/pretrain.py:tiny", {"model.num_layers": 1})
    checkpoints.save_params(str(tmp_path / "ckpt"), _random_params(config), config)
    cli.run("to_hf", _flags(checkpoint=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "hf"),
                            vocab=str(uncased_vocab)))
    (tmp_path / "hf" / "discriminator").rename(tmp_path / "disc")  # no generator/ beside it now
    cli.run("from_hf", _flags(input=str(tmp_path / "disc"), output_dir=str(tmp_path / "back")))
    out = capsys.readouterr().out
    assert "discriminator only" in out and "--generator=HF_GEN_DIR" in out
    back, _ = checkpoints.restore_params(str(tmp_path / "back"))
    assert "generator" not in back and "discriminator" in back
    # The generator half of an export alone imports as the masked-LM model it is, and says where the pair is.
    cli.run("from_hf", _flags(input=str(tmp_path / "hf" / "generator"), output_dir=str(tmp_path / "gen")))
    out = capsys.readouterr().out
    assert "wrote a masked-LM model" in out and "discriminator + generator" not in out
    (tmp_path / "disc").rename(tmp_path / "hf" / "discriminator")
    cli.run("from_hf", _flags(input=str(tmp_path / "hf" / "generator"), output_dir=str(tmp_path / "gen2")))
    assert f"pass their parent folder ({tmp_path / 'hf'}) as --input" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cli.run("from_hf", _flags(input=str(tmp_path / "nothing"), output_dir=str(tmp_path / "x")))
    with pytest.raises(FileNotFoundError, match=r"is a file: pass the HF model folder that holds it"):
        cli.run("from_hf", _flags(input=str(tmp_path / "hf" / "generator" / "config.json"),
                                  output_dir=str(tmp_path / "x")))


def test_exported_discriminator_fine_tunes_in_pytorch(shared_dir, uncased_vocab, tmp_path):
    """A tiny pre-training checkpoint -> to_hf -> ElectraForSequenceClassification, a few AdamW steps."""
    config = config_lib.load("configs/pretrain.py:tiny", {"model.num_layers": 1})
    # A freshly initialized model keeps this fast; the slow test below exports a real `pretrain` checkpoint.
    checkpoints.save_params(str(tmp_path / "ckpt"), _fresh_params(config), config)
    cli.run("to_hf", _flags(checkpoint=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "hf"),
                                vocab=str(uncased_vocab)))
    _fine_tune_a_few_steps(str(tmp_path / "hf" / "discriminator"), shared_dir)


def _fine_tune_a_few_steps(folder, shared_dir):
    """ElectraForSequenceClassification from an exported discriminator: 8 AdamW steps on 16 SST-2 sentences."""
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.ElectraForSequenceClassification.from_pretrained(folder, num_labels=2)
    with open(shared_dir / "data" / "glue" / "SST-2" / "dev.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:16]
    batch = tok([r["sentence"] for r in rows], padding=True, truncation=True, max_length=64, return_tensors="pt")
    labels = torch.tensor([int(r["label"]) for r in rows])

    def eval_loss():
        model.eval()
        with torch.no_grad():
            return float(model(**batch, labels=labels).loss)

    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before, losses = eval_loss(), []
    model.train()
    for _ in range(8):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    after = eval_loss()
    assert all(np.isfinite(losses + [before, after])), losses
    assert after < before, (before, after, losses)  # dropout off: the same batch, fitted a little


@pytest.mark.slow
def test_training_system_checkpoint_exports_and_fine_tunes(shared_dir, uncased_vocab, tmp_path):
    """The real thing: `pretrain` for 2 synthetic steps, `convert to_hf --check` as a command, then PyTorch."""
    import os
    import subprocess

    env = dict(os.environ, JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, "-m", "electra_jax.pretrain", "--config=configs/pretrain.py:tiny",
                    f"--workdir={tmp_path / 'run'}", "--config.data.synthetic=True", "--config.train.steps=2",
                    "--config.model.num_layers=1", "--config.train.batch_size=4", "--config.data.max_seq_length=32",
                    "--config.checkpoint.every_steps=2"], check=True, env=env, cwd=Path(__file__).parents[1],
                   capture_output=True)
    result = subprocess.run([sys.executable, "-m", "electra_jax.convert", "to_hf", f"--checkpoint={tmp_path / 'run'}",
                             f"--output_dir={tmp_path / 'hf'}", f"--vocab={uncased_vocab}", "--check"],
                            env=env, cwd=Path(__file__).parents[1], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generator: max |logit difference|" in result.stdout
    _fine_tune_a_few_steps(str(tmp_path / "hf" / "discriminator"), shared_dir)


def test_a_flag_the_command_does_not_read_is_refused_not_ignored(tmp_path):
    """from_tf reads its source as --input: a --checkpoint there used to be dropped silently, leaving the run to fail
    on a missing --input, or worse, with both given, to convert one and ignore the other."""
    import subprocess

    from electra_jax.convert.cli import unread_flags_error

    assert unread_flags_error("from_tf", {"input", "output_dir", "vocab", "verbosity"}) is None  # absl's own pass
    message = unread_flags_error("from_tf", {"checkpoint", "output_dir"})
    assert message.startswith("from_tf does not read --checkpoint (from_tf takes its source as --input;")
    assert unread_flags_error("to_hf", {"checkpoint", "input", "num_heads", "output_dir"}).startswith(
        "to_hf does not read --input, --num_heads (to_hf takes an electra_jax checkpoint as --checkpoint;")
    assert unread_flags_error("check", {"checkpoint", "hf_dir", "dtype"}).startswith("check does not read --dtype;")
    done = subprocess.run([sys.executable, "-m", "electra_jax.convert", "from_tf", f"--checkpoint={tmp_path / 'x'}",
                           f"--output_dir={tmp_path / 'out'}"], cwd=Path(__file__).parents[1], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "from_tf does not read --checkpoint" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()
