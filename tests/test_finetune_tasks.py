"""Task readers and featurization: real GLUE files, bad inputs, SQuAD windows and decoding, CoNLL tagging."""


import numpy as np
import pytest

from electra_jax import config as config_lib
from electra_jax.data import tokenizer
from electra_jax.finetune import glue, squad, tagging, tasks
from electra_jax.finetune.task import DataFormatError

from squad_data import squad_json


@pytest.fixture(scope="module")
def tok(uncased_vocab):
    return tokenizer(uncased_vocab, lower_case=True)


# --- GLUE ----------------------------------------------------------------------------------------------------

# Row counts from ../shared/data/glue/PROVENANCE.md (the official GLUE counts).
GLUE_COUNTS = [("sst2", "train", 67349), ("sst2", "dev", 872), ("cola", "train", 8551), ("cola", "dev", 1043),
               ("mrpc", "dev", 408), ("rte", "train", 2490), ("rte", "dev", 277), ("stsb", "dev", 1500),
               ("qnli", "dev", 5463)]


@pytest.mark.parametrize("name,split,count", GLUE_COUNTS)
def test_real_glue_files_read_completely(shared_dir, name, split, count):
    spec = tasks.get_task(name)
    folder = shared_dir / "data" / "glue" / spec.glue_dir
    examples = glue.read_glue_file(spec, str(folder / ("train.tsv" if split == "train" else spec.dev_file)), split)
    assert len(examples) == count


def test_glue_labels_and_doubling(shared_dir):
    glue_dir = shared_dir / "data" / "glue"
    mrpc = tasks.get_task("mrpc")
    train = glue.read_glue_file(mrpc, str(glue_dir / "MRPC" / "train.tsv"), "train", double_unordered=True)
    assert len(train) == 2 * 3668
    # The swapped copy of the first pair; MRPC text keeps its bare quotes (no CSV quoting).
    first, swapped = train[0], train[3668]
    assert (swapped.text_a, swapped.text_b, swapped.label) == (first.text_b, first.text_a, first.label)
    assert '"the witness",' in first.text_b
    assert sum(e.label for e in train[:3668]) == 2474  # label 1 count from PROVENANCE.md
    single = glue.read_glue_file(mrpc, str(glue_dir / "MRPC" / "train.tsv"), "train", double_unordered=False)
    assert len(single) == 3668
    rte = glue.read_glue_file(tasks.get_task("rte"), str(glue_dir / "RTE" / "dev.tsv"), "dev")
    assert sum(e.label == 0 for e in rte) == 146  # entailment
    stsb = glue.read_glue_file(tasks.get_task("stsb"), str(glue_dir / "STS-B" / "dev.tsv"), "dev")
    assert np.mean([e.label for e in stsb]) == pytest.approx(2.364, abs=1e-3)
    cola = glue.read_glue_file(tasks.get_task("cola"), str(glue_dir / "CoLA" / "dev.tsv"), "dev")
    assert sum(e.label for e in cola) == 721


def test_wrong_header_names_file_line_and_columns(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("it 's a charming journey .\t1\nbleak\t0\n")
    with pytest.raises(DataFormatError) as error:
        glue.read_glue_file(tasks.get_task("sst2"), str(path), "train")
    message = str(error.value)
    assert str(path) in message and "line 1" in message and "'sentence', 'label'" in message


def test_wrong_column_count_names_the_line(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(DataFormatError) as error:
        glue.read_glue_file(tasks.get_task("rte"), str(path), "dev")
    message = str(error.value)
    assert str(path) in message and "line 3" in message and "expected 4" in message and "found 2" in message


def test_headerless_cola_with_three_columns(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("gj04\t1\t\tThe sailors rode the breeze.\ngj04\t1\tNo star column here\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected 4 tab-separated columns"):
        glue.read_glue_file(tasks.get_task("cola"), str(path), "train")


def test_bad_label_named(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("sentence\tlabel\ngood film\tpositive\n")
    with pytest.raises(DataFormatError, match=r"line 2: label 'positive' is not one of the sst2 labels"):
        glue.read_glue_file(tasks.get_task("sst2"), str(path), "train")


def test_unknown_task_messages():
    with pytest.raises(config_lib.ConfigError, match=r"unknown fine-tuning task 'sst3'.*sst2"):
        config_lib.load("configs/finetune.py:sst3")
    with pytest.raises(ValueError, match="unknown fine-tuning task 'boolq'"):
        tasks.get_task("boolq")
    with pytest.raises(config_lib.ConfigError, match="unknown model size 'huge'"):
        config_lib.load("configs/finetune.py:sst2,huge")


def test_missing_data_dir_message():
    config = config_lib.load("configs/finetune.py:sst2,tiny")
    with pytest.raises(ValueError, match=r"--config.data.dir"):
        tasks.get_task("sst2").read("train", config.data)


def test_classification_features_and_pair_truncation(tok):
    examples = [glue.Example("a", "the cat sat on the mat", "a dog", 1), glue.Example("b", "hello world", None, 0)]
    features = glue.featurize_classification(examples, tok, max_seq_length=8)
    ids_a, ids_b = tok.encode("the cat sat on the mat"), tok.encode("a dog")
    # Budget 8 - 3 = 5: the longer side (6 tokens) loses tokens until 3 + 2 fit.
    expected = [tok.cls_id] + ids_a[:3] + [tok.sep_id] + ids_b + [tok.sep_id]
    assert features["input_ids"][0].tolist() == expected
    assert features["segment_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    single = [tok.cls_id] + tok.encode("hello world") + [tok.sep_id]
    assert features["input_ids"][1, :4].tolist() == single
    assert features["input_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert features["labels"].tolist() == [1, 0]


def test_glue_from_tfds_mock_data():
    """The TFDS path with tfds' own mock data (random rows from the builder's feature spec, nothing downloaded)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        examples = glue.read_glue_tfds(tasks.get_task("mnli"), "dev", None)
        pairs = glue.read_glue_tfds(tasks.get_task("mrpc"), "train", None, double_unordered=True)
    assert len(examples) == 6 and all(e.label in (0, 1, 2) and e.text_b is not None for e in examples)
    assert len(pairs) == 12
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        questions = squad.read_squad_tfds("squad/v1.1", "dev", None, v2=False)
    assert len(questions) == 4 and all(e.doc_tokens is not None for e in questions)


def test_mnli_and_qqp_headers_located_by_name(tmp_path):
    mnli_header = ("index promptID pairID genre sentence1_binary_parse sentence2_binary_parse sentence1_parse "
                   "sentence2_parse sentence1 sentence2 label1 label2 label3 label4 label5 gold_label").split()
    row = ["0", "1", "1e", "fiction", "(x)", "(y)", "(x)", "(y)", "A man sleeps.", "A person rests.", "entailment",
           "entailment", "neutral", "entailment", "entailment", "entailment"]
    (tmp_path / "dev_matched.tsv").write_text("\t".join(mnli_header) + "\n" + "\t".join(row) + "\n")
    (example,) = glue.read_glue_file(tasks.get_task("mnli"), str(tmp_path / "dev_matched.tsv"), "dev")
    assert (example.text_a, example.text_b, example.label) == ("A man sleeps.", "A person rests.", 1)
    (tmp_path / "train.tsv").write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
                                        "7\t1\t2\tHow old?\tWhat age?\t1\n")
    (example,) = glue.read_glue_file(tasks.get_task("qqp"), str(tmp_path / "train.tsv"), "train")
    assert (example.text_a, example.text_b, example.label) == ("How old?", "What age?", 1)


# --- SQuAD ---------------------------------------------------------------------------------------------------

def test_squad_windows_point_at_the_answer(tmp_path, tok):
    examples = squad.read_squad_file(str(squad_json(tmp_path / "train.json", v2=True)), "train", v2=True)
    assert [e.is_impossible for e in examples] == [False, False, True]
    features, metas = squad.featurize_squad(examples, tok, max_seq_length=32, doc_stride=8, max_query_length=10,
                                            is_training=True)
    assert len(metas) > len(examples)  # the 45-piece context needs several windows
    found = {}
    for i, meta in enumerate(metas):
        start, end = features["start_positions"][i], features["end_positions"][i]
        if start > 0:
            text = " ".join(meta.tokens[start:end + 1]).replace(" ##", "")
            found.setdefault(examples[meta.example_index].qas_id, set()).add(text)
        else:
            assert end == 0
        assert features["input_ids"][i, 0] == tok.cls_id
    assert found["q1"] == {"france"}
    assert found["q2"] == {"denmark , iceland and norway"}
    assert "q3" not in found and features["is_impossible"][-1] == 1.0
    # Each document token is "max context" in exactly one window.
    per_word = {}
    for meta in metas:
        if meta.example_index == 0:
            for position, is_max in meta.token_is_max_context.items():
                per_word.setdefault((meta.token_to_orig_map[position], meta.tokens[position]), []).append(is_max)
    assert all(sum(flags) >= 1 for flags in per_word.values())


def test_get_final_text_projects_back():
    assert squad.get_final_text("steve smith", "Steve Smith's", lower_case=True) == "Steve Smith"
    assert squad.get_final_text("1895", "(1895-1943).", lower_case=True) == "1895"


def test_answers_keep_their_accents_as_the_tokenizer_does(tmp_path):
    """An uncased tokenizer that keeps accents (published German ELECTRAs) predicts the pieces 'köln'; the
    answer is projected back onto the context as the word 'Köln' (a hand reading of the context), not the whole
    'Köln,' that a projection stripping accents falls back to. The original's tie and a cased tokenizer that
    strips accents project to the same word."""
    import json

    assert squad.get_final_text("köln", "Köln,", lower_case=True, strip_accents=False) == "Köln"
    assert squad.get_final_text("koln", "Köln,", lower_case=True) == "Köln"  # the original: strips when lower-casing
    assert squad.get_final_text("Koln", "Köln,", lower_case=False, strip_accents=True) == "Köln"
    assert squad.get_final_text("Köln", "Köln,", lower_case=False) == "Köln"

    context = "Sie wohnt in Köln, sagt Müller."
    words = ["sie", "wohnt", "in", "köln", "koln", "sagt", "müller", "muller", ",", ".", "wo", "?"]
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n",
                                        encoding="utf-8")
    qas = [{"id": "q", "question": "Wo wohnt sie?", "answers": [{"text": "Köln", "answer_start": 13}]}]
    (tmp_path / "dev.json").write_text(json.dumps({"version": "1.1", "data": [
        {"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}), encoding="utf-8")
    examples = squad.read_squad_file(str(tmp_path / "dev.json"), "dev", v2=False)
    for strip_accents, piece in ((False, "köln"), (None, "koln")):
        tok = tokenizer(str(tmp_path / "vocab.txt"), lower_case=True, strip_accents=strip_accents)
        _, metas = squad.featurize_squad(examples, tok, max_seq_length=32, doc_stride=16, max_query_length=8,
                                         is_training=False)
        start = metas[0].tokens.index(piece)
        predictions, _ = squad.squad_predictions(
            examples, metas, np.array([[0.0]]), np.array([[start]]), np.array([[[0.0]]]), np.array([[[start]]]),
            np.array([0.0]), lower_case=True, strip_accents=strip_accents)
        assert predictions == {"q": "Köln"}, strip_accents


def test_squad_decoding_picks_best_valid_span(tmp_path, tok):
    examples = squad.read_squad_file(str(squad_json(tmp_path / "dev.json")), "dev", v2=False)
    features, metas = squad.featurize_squad(examples[:1], tok, max_seq_length=128, doc_stride=64,
                                            max_query_length=20, is_training=False)
    meta = metas[0]
    start = next(p for p, t in enumerate(meta.tokens) if t == "france")
    question_position = 2  # inside the question: never a valid answer start
    k = 3
    start_top_index = np.array([[question_position, start, start + 1]])
    start_top_log_probs = np.array([[-0.1, -0.5, -0.7]])
    end_top_index = np.array([[[question_position] * k, [start - 1, start, start + 1], [start + 1] * k]])
    end_top_log_probs = np.array([[[-0.1] * k, [-0.05, -0.2, -0.3], [-0.1] * k]])
    predictions, nulls = squad.squad_predictions(examples[:1], metas, start_top_log_probs, start_top_index,
                                                 end_top_log_probs, end_top_index, np.array([-3.0]))
    # (start, start - 1) is invalid (end < start); the best valid is (start, start): "France" (original case).
    assert predictions == {"q1": "France"}
    assert nulls == {"q1": -3.0}


# --- Tagging -------------------------------------------------------------------------------------------------


def test_conll_reader_and_first_piece_labels(tmp_path, tok):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGermanic JJ B-NP B-MISC\n"
                    "call NN I-NP O\n\nPeter NNP B-NP B-PER\n")
    examples = tagging.read_conll_file(str(path))
    assert [e.words for e in examples] == [["EU", "rejects", "Germanic", "call"], ["Peter"]]
    labels = tagging.tagging_label_list(examples)
    assert labels == sorted({"O", "S-ORG", "S-MISC", "S-PER"})
    features = tagging.featurize_tagging(examples, tok, 16, labels)
    pieces = [tok.encode(w) for w in examples[0].words]
    expected_positions, position = [], 1
    for p in pieces:
        expected_positions.append(position)
        position += len(p)
    assert features["labeled_positions"][0, :4].tolist() == expected_positions
    assert features["label_mask"][0].sum() == 4
    assert [labels[i] for i in features["labels"][0, :4]] == ["S-ORG", "O", "S-MISC", "O"]
    assert features["segment_ids"][0, :position + 1].tolist() == [1] * (position + 1)


def test_conll_bad_line_named(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(DataFormatError, match=r"line 2: expected at least 2"):
        tagging.read_conll_file(str(path))
    path.write_text("EU NNP B-NP ORG\n")
    with pytest.raises(DataFormatError, match=r"line 1: the last column 'ORG' is not a chunk tag"):
        tagging.read_conll_file(str(path))
