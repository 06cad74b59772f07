"""Fine-tuning tasks: readers for GLUE, SQuAD and CoNLL-style tagging, and their featurization.

Each task reads either local files in the task's standard layout (`config.data.dir`) or a TFDS dataset
already prepared under a local data dir (never downloaded). Featurization follows the original ELECTRA
`finetune/` code (ELECTRA_REFERENCE.md section 6):

* classification/regression: `[CLS] A [SEP] (B [SEP])`, pairs truncated one token at a time from the
  longer side; MRPC and STS-B training pairs are doubled with A and B swapped (`double_unordered`);
* SQuAD: whitespace words -> word pieces, `[CLS] question(<=64) [SEP] doc span [SEP]`, sliding windows with
  a document stride, answers outside a training window point at [CLS]; the n-best decoding of
  qa_metrics.py (maximal-context windows, lengths <= max_answer_length) maps spans back to the text;
* tagging: words -> word pieces, only the first piece of each word is labelled, BIOES tags internally.

Only the TFDS readers import TensorFlow (inside the function).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from electra_jax import scoring

# ---------------------------------------------------------------------------------------------------------
# Task registry


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task is: its kind, metrics (reported ones first), labels and data layout."""

    name: str
    kind: str  # "classification", "regression", "qa" or "tagging"
    metrics: tuple[str, ...]
    labels: tuple[str, ...] = ()
    glue_dir: str = ""  # folder name in the standard glue_data layout
    dev_file: str = "dev.tsv"
    # Header tasks: the column names to read (text_a, text_b, label); headerless tasks (CoLA): indices.
    columns: tuple = ()
    header: bool = True
    num_columns: int = 0  # exact column count for headerless files
    unordered_pair: bool = False  # MRPC, STS-B: doubled with A/B swapped (double_unordered)
    tfds_name: str = ""
    tfds_dev_split: str = "validation"
    tfds_fields: tuple = ()  # (text_a, text_b or None) feature names
    epochs: int = 3
    max_seq_length: int = 128
    squad_v2: bool = False

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels)


TASKS: dict[str, TaskSpec] = {
    t.name: t for t in [
        TaskSpec("cola", "classification", ("mcc", "accuracy"), ("0", "1"), "CoLA", columns=(3, None, 1),
                 header=False, num_columns=4, tfds_name="glue/cola", tfds_fields=("sentence", None)),
        TaskSpec("sst2", "classification", ("accuracy",), ("0", "1"), "SST-2", columns=("sentence", None, "label"),
                 tfds_name="glue/sst2", tfds_fields=("sentence", None)),
        TaskSpec("mrpc", "classification", ("accuracy", "f1"), ("0", "1"), "MRPC",
                 columns=("#1 String", "#2 String", "Quality"), unordered_pair=True, tfds_name="glue/mrpc",
                 tfds_fields=("sentence1", "sentence2")),
        TaskSpec("stsb", "regression", ("pearson", "spearman"), (), "STS-B",
                 columns=("sentence1", "sentence2", "score"), unordered_pair=True, epochs=10,
                 tfds_name="glue/stsb", tfds_fields=("sentence1", "sentence2")),
        TaskSpec("qqp", "classification", ("accuracy", "f1"), ("0", "1"), "QQP",
                 columns=("question1", "question2", "is_duplicate"), tfds_name="glue/qqp",
                 tfds_fields=("question1", "question2")),
        TaskSpec("mnli", "classification", ("accuracy",), ("contradiction", "entailment", "neutral"), "MNLI",
                 dev_file="dev_matched.tsv", columns=("sentence1", "sentence2", "gold_label"),
                 tfds_name="glue/mnli", tfds_dev_split="validation_matched", tfds_fields=("premise", "hypothesis")),
        TaskSpec("qnli", "classification", ("accuracy",), ("entailment", "not_entailment"), "QNLI",
                 columns=("question", "sentence", "label"), tfds_name="glue/qnli",
                 tfds_fields=("question", "sentence")),
        TaskSpec("rte", "classification", ("accuracy",), ("entailment", "not_entailment"), "RTE",
                 columns=("sentence1", "sentence2", "label"), epochs=10, tfds_name="glue/rte",
                 tfds_fields=("sentence1", "sentence2")),
        TaskSpec("squad_v1", "qa", ("exact", "f1"), epochs=2, max_seq_length=512, tfds_name="squad/v1.1"),
        TaskSpec("squad_v2", "qa", ("exact", "f1", "best_exact", "best_f1"), epochs=2, max_seq_length=512,
                 tfds_name="squad/v2.0", squad_v2=True),
        TaskSpec("ner", "tagging", ("f1", "precision", "recall"), tfds_name="conll2003"),
        TaskSpec("chunk", "tagging", ("f1", "precision", "recall"), max_seq_length=256),
    ]
}


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown fine-tuning task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[name]


class DataFormatError(ValueError):
    """An input file does not have the expected layout; the message names the file, the line and the fix."""


# ---------------------------------------------------------------------------------------------------------
# GLUE (local TSV files)


@dataclasses.dataclass
class Example:
    guid: str
    text_a: str
    text_b: str | None
    label: Any  # label index (classification) or float (regression)


def _read_tsv(path: str) -> list[list[str]]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: config.data.dir should hold the task's files in the standard "
                                "GLUE layout (train.tsv, dev.tsv)")
    csv.field_size_limit(sys.maxsize)
    # GLUE TSVs are not CSV-quoted (MRPC sentences start with bare quotes): read fields verbatim,
    # as the original's csv.reader(delimiter="\t", quotechar=None).
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [row for row in csv.reader(f, delimiter="\t", quotechar=None)]


def _label_value(spec: TaskSpec, raw: str, path: str, line: int):
    if spec.kind == "regression":
        try:
            return float(raw)
        except ValueError:
            raise DataFormatError(f"{path}, line {line}: the {spec.name} score column holds {raw!r}, "
                                  "expected a number") from None
    if raw not in spec.labels:
        raise DataFormatError(f"{path}, line {line}: label {raw!r} is not one of the {spec.name} labels "
                              f"{list(spec.labels)}")
    return spec.labels.index(raw)


def read_glue_file(spec: TaskSpec, path: str, split: str, double_unordered: bool = True) -> list[Example]:
    """Reads one GLUE TSV, checking its header (or column count) row by row."""
    rows = _read_tsv(path)
    examples = []
    if spec.header:
        if not rows:
            raise DataFormatError(f"{path}: the file is empty; expected a header line with columns "
                                  f"{[c for c in spec.columns if c]}")
        header = [h.strip() for h in rows[0]]
        missing = [c for c in spec.columns if c is not None and c not in header]
        if missing:
            raise DataFormatError(
                f"{path}, line 1: expected a {spec.name} header naming the columns "
                f"{[c for c in spec.columns if c]} (tab-separated); found {header[:12]}. Missing: {missing}")
        index = [header.index(c) if c is not None else None for c in spec.columns]
        width, body, first_line = len(header), rows[1:], 2
    else:
        index, width, body, first_line = list(spec.columns), spec.num_columns, rows, 1
    for offset, row in enumerate(body):
        line = first_line + offset
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != width:
            names = spec.columns if spec.header else "source, label, original label, sentence"
            raise DataFormatError(
                f"{path}, line {line}: expected {width} tab-separated columns "
                f"({', '.join(header) if spec.header else names}), found {len(row)}")
        text_a = row[index[0]]
        text_b = row[index[1]] if index[1] is not None else None
        label = _label_value(spec, row[index[2]].strip(), path, line)
        examples.append(Example(f"{split}-{line}", text_a, text_b, label))
    if split == "train" and double_unordered and spec.unordered_pair:
        examples += [Example(e.guid + "-swapped", e.text_b, e.text_a, e.label) for e in list(examples)]
    return examples


# ---------------------------------------------------------------------------------------------------------
# TFDS (prepared locally; never downloaded)


def _tfds_load(name: str, split: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
        dataset = builder.as_dataset(split=split)
    except Exception as error:  # tfds raises several types for "not prepared"
        raise FileNotFoundError(
            f"TFDS dataset {name} (split {split}) is not prepared under data dir {data_dir or '~/tensorflow_datasets'}:"
            f" {error}. Prepare it where there is network (`tfds build {name} --data_dir=DIR`) and pass "
            "--config.data.tfds_data_dir=DIR; electra_jax never downloads at run time.") from error
    return builder, tfds.as_numpy(dataset)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_glue_tfds(spec: TaskSpec, split: str, data_dir: str | None, double_unordered: bool = True) -> list[Example]:
    tfds_split = "train" if split == "train" else spec.tfds_dev_split
    builder, rows = _tfds_load(spec.tfds_name, tfds_split, data_dir)
    names = None
    if spec.kind == "classification":
        names = builder.info.features["label"].names
    examples = []
    field_a, field_b = spec.tfds_fields
    for i, row in enumerate(rows):
        raw = row["label"]
        if spec.kind == "regression":
            label = float(raw)
        else:
            if raw < 0:  # unlabelled (test) rows
                continue
            # Numeric GLUE labels ("0"/"1") keep their index; named ones map by name (TFDS MNLI order differs).
            label = int(raw) if spec.labels == ("0", "1") else spec.labels.index(names[int(raw)])
        examples.append(Example(f"{split}-{i}", _text(row[field_a]), _text(row[field_b]) if field_b else None, label))
    if split == "train" and double_unordered and spec.unordered_pair:
        examples += [Example(e.guid + "-swapped", e.text_b, e.text_a, e.label) for e in list(examples)]
    return examples


# ---------------------------------------------------------------------------------------------------------
# Classification featurization


def _truncate_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
    """Removes one token at a time from the longer sequence (the original _truncate_seq_pair)."""
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def featurize_classification(examples: Sequence[Example], tokenizer, max_seq_length: int,
                             regression: bool = False) -> dict[str, np.ndarray]:
    """input_ids, input_mask, segment_ids [N, S] and labels [N] (float32 for regression)."""
    n = len(examples)
    input_ids = np.full((n, max_seq_length), tokenizer.pad_id, np.int32)
    input_mask = np.zeros((n, max_seq_length), np.int32)
    segment_ids = np.zeros((n, max_seq_length), np.int32)
    labels = np.zeros((n,), np.float32 if regression else np.int32)
    encoded_a = tokenizer.encode_batch([e.text_a for e in examples])
    has_b = [e.text_b is not None for e in examples]
    encoded_b = tokenizer.encode_batch([e.text_b if e.text_b is not None else "" for e in examples])
    for i, example in enumerate(examples):
        tokens_a = list(encoded_a[i])
        if has_b[i]:
            tokens_b = list(encoded_b[i])
            _truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
        else:
            tokens_b = None
            tokens_a = tokens_a[: max_seq_length - 2]
        ids = [tokenizer.cls_id] + tokens_a + [tokenizer.sep_id]
        segments = [0] * len(ids)
        if tokens_b is not None:
            ids += tokens_b + [tokenizer.sep_id]
            segments += [1] * (len(tokens_b) + 1)
        input_ids[i, : len(ids)] = ids
        input_mask[i, : len(ids)] = 1
        segment_ids[i, : len(ids)] = segments
        labels[i] = example.label
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids, "labels": labels}


# ---------------------------------------------------------------------------------------------------------
# SQuAD


@dataclasses.dataclass
class QAExample:
    qas_id: str
    question_text: str
    doc_tokens: list[str]
    orig_answer_text: str = ""
    start_position: int = -1  # word index (training)
    end_position: int = -1
    is_impossible: bool = False
    gold_answers: list[str] = dataclasses.field(default_factory=list)  # every gold text (evaluation)


def _is_whitespace(c: str) -> bool:
    return c in " \t\r\n" or ord(c) == 0x202F


def _doc_words(text: str) -> tuple[list[str], list[int]]:
    doc_tokens, char_to_word = [], []
    prev_is_whitespace = True
    for c in text:
        if _is_whitespace(c):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                doc_tokens.append(c)
            else:
                doc_tokens[-1] += c
            prev_is_whitespace = False
        char_to_word.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word


def squad_examples_from_paragraphs(paragraphs, split: str, v2: bool, source: str = "SQuAD data") -> list[QAExample]:
    """paragraphs: iterable of {"context", "qas": [{"id", "question", "answers", "is_impossible"?}]}."""
    examples, failures = [], 0
    for paragraph in paragraphs:
        doc_tokens, char_to_word = _doc_words(paragraph["context"])
        for qa in paragraph["qas"]:
            answers = qa.get("answers", [])
            impossible = bool(qa.get("is_impossible", v2 and not answers))
            example = QAExample(str(qa["id"]), qa["question"], doc_tokens, is_impossible=impossible,
                                gold_answers=[a["text"] for a in answers])
            if split == "train" and not impossible:
                if not answers:
                    raise DataFormatError(f"{source}: training question {qa['id']!r} has no answers and is not "
                                          "marked is_impossible")
                answer = answers[0]
                offset, text = int(answer["answer_start"]), answer["text"]
                if offset + len(text) - 1 >= len(char_to_word) or offset < 0:
                    failures += 1
                    continue
                example.orig_answer_text = text
                example.start_position = char_to_word[offset]
                example.end_position = char_to_word[offset + len(text) - 1]
                # Only keep answers whose text is recoverable from the words (the original's check).
                actual = " ".join(doc_tokens[example.start_position: example.end_position + 1]).lower()
                if actual.find(" ".join(text.split()).lower()) == -1:
                    failures += 1
                    continue
            examples.append(example)
    if failures:
        print(f"{source}: skipped {failures} training answers that could not be located in the context")
    return examples


def read_squad_file(path: str, split: str, v2: bool) -> list[QAExample]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: config.data.dir should hold the SQuAD json files "
                                "(train-v1.1.json/dev-v1.1.json, train-v2.0.json/dev-v2.0.json, "
                                "or train.json/dev.json)")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}, line {error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict) or "data" not in data:
        raise DataFormatError(f"{path}: expected the SQuAD layout {{\"data\": [{{\"paragraphs\": [{{\"context\", "
                              "\"qas\"}]}]}}; found no top-level \"data\" field")
    paragraphs = []
    for article in data["data"]:
        for paragraph in article.get("paragraphs", []):
            if "context" not in paragraph or "qas" not in paragraph:
                raise DataFormatError(f"{path}: a paragraph of article {article.get('title', '?')!r} lacks "
                                      "\"context\" or \"qas\"")
            paragraphs.append(paragraph)
    return squad_examples_from_paragraphs(paragraphs, split, v2, source=path)


def read_squad_tfds(name: str, split: str, data_dir: str | None, v2: bool) -> list[QAExample]:
    _, rows = _tfds_load(name, "train" if split == "train" else "validation", data_dir)
    paragraphs = []
    for row in rows:
        texts = [_text(t) for t in row["answers"]["text"]]
        starts = [int(s) for s in row["answers"]["answer_start"]]
        qa = {"id": _text(row["id"]), "question": _text(row["question"]),
              "answers": [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]}
        if "is_impossible" in row:
            qa["is_impossible"] = bool(row["is_impossible"])
        paragraphs.append({"context": _text(row["context"]), "qas": [qa]})
    return squad_examples_from_paragraphs(paragraphs, split, v2, source=f"TFDS {name}")


def _check_is_max_context(doc_spans, cur_span_index: int, position: int) -> bool:
    best_score, best_span_index = None, None
    for span_index, (start, length) in enumerate(doc_spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score, best_span_index = score, span_index
    return cur_span_index == best_span_index


def _improve_answer_span(doc_tokens, input_start, input_end, tokenizer, orig_answer_text):
    tok_answer_text = " ".join(tokenizer.tokenize(orig_answer_text))
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start:new_end + 1]) == tok_answer_text:
                return new_start, new_end
    return input_start, input_end


@dataclasses.dataclass
class QAFeatureMeta:
    """What decoding needs about one window: which example, its tokens and the token -> word maps."""

    example_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]
    token_is_max_context: dict[int, bool]


def featurize_squad(examples: Sequence[QAExample], tokenizer, max_seq_length: int, doc_stride: int,
                    max_query_length: int, is_training: bool) -> tuple[dict[str, np.ndarray], list[QAFeatureMeta]]:
    """Windows of every example: arrays [F, S] (+ positions/is_impossible) and per-window metadata."""
    arrays = collections.defaultdict(list)
    metas = []
    for example_index, example in enumerate(examples):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
        tok_to_orig, orig_to_tok, all_doc_tokens = [], [], []
        for i, word in enumerate(example.doc_tokens):
            orig_to_tok.append(len(all_doc_tokens))
            for sub_token in tokenizer.tokenize(word):
                tok_to_orig.append(i)
                all_doc_tokens.append(sub_token)
        tok_start = tok_end = -1
        if is_training and not example.is_impossible:
            tok_start = orig_to_tok[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end = orig_to_tok[example.end_position + 1] - 1
            else:
                tok_end = len(all_doc_tokens) - 1
            tok_start, tok_end = _improve_answer_span(all_doc_tokens, tok_start, tok_end, tokenizer,
                                                      example.orig_answer_text)
        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3  # [CLS], [SEP], [SEP]
        if max_tokens_for_doc <= 0:
            raise ValueError(f"max_seq_length {max_seq_length} leaves no room for the document after a "
                             f"{len(query_tokens)}-token question; raise it or lower max_query_length")
        doc_spans, start_offset = [], 0
        while start_offset < len(all_doc_tokens):
            length = min(len(all_doc_tokens) - start_offset, max_tokens_for_doc)
            doc_spans.append((start_offset, length))
            if start_offset + length == len(all_doc_tokens):
                break
            start_offset += min(length, doc_stride)
        for span_index, (span_start, span_length) in enumerate(doc_spans):
            tokens = ["[CLS]"] + query_tokens + ["[SEP]"]
            segment = [0] * len(tokens)
            token_to_orig, is_max_context = {}, {}
            for i in range(span_length):
                split_index = span_start + i
                token_to_orig[len(tokens)] = tok_to_orig[split_index]
                is_max_context[len(tokens)] = _check_is_max_context(doc_spans, span_index, split_index)
                tokens.append(all_doc_tokens[split_index])
                segment.append(1)
            tokens.append("[SEP]")
            segment.append(1)
            ids = ([tokenizer.cls_id] + tokenizer.convert_tokens_to_ids(tokens[1:len(query_tokens) + 1])
                   + [tokenizer.sep_id] + tokenizer.convert_tokens_to_ids(tokens[len(query_tokens) + 2:-1])
                   + [tokenizer.sep_id])
            input_ids = np.full(max_seq_length, tokenizer.pad_id, np.int32)
            input_ids[: len(ids)] = ids
            mask = np.zeros(max_seq_length, np.int32)
            mask[: len(ids)] = 1
            segments = np.zeros(max_seq_length, np.int32)
            segments[: len(segment)] = segment
            start_position = end_position = 0
            if is_training and not example.is_impossible:
                doc_end = span_start + span_length - 1
                # A window without the whole answer is trained to point at [CLS].
                if tok_start >= span_start and tok_end <= doc_end:
                    offset = len(query_tokens) + 2
                    start_position, end_position = tok_start - span_start + offset, tok_end - span_start + offset
            arrays["input_ids"].append(input_ids)
            arrays["input_mask"].append(mask)
            arrays["segment_ids"].append(segments)
            arrays["start_positions"].append(start_position)
            arrays["end_positions"].append(end_position)
            arrays["is_impossible"].append(float(example.is_impossible))
            metas.append(QAFeatureMeta(example_index, tokens, token_to_orig, is_max_context))
    dtypes = {"is_impossible": np.float32}
    out = {k: np.asarray(v, dtypes.get(k, np.int32)) for k, v in arrays.items()}
    if not metas:
        out = {k: np.zeros((0, max_seq_length) if k in ("input_ids", "input_mask", "segment_ids") else (0,),
                           dtypes.get(k, np.int32))
               for k in ("input_ids", "input_mask", "segment_ids", "start_positions", "end_positions", "is_impossible")}
    return out, metas


def _basic_tokenize(text: str, lower_case: bool) -> list[str]:
    """The original BasicTokenizer (cleaning, accent stripping when lower-casing, punctuation splits)."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=lower_case,
                                            lowercase=lower_case)
    return [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalizer.normalize_str(text))]


def get_final_text(pred_text: str, orig_text: str, lower_case: bool) -> str:
    """Projects the normalized word-piece answer back onto the original text (qa_metrics.get_final_text)."""

    def strip_spaces(text):
        chars, ns_to_s = [], {}
        for i, c in enumerate(text):
            if c == " ":
                continue
            ns_to_s[len(chars)] = i
            chars.append(c)
        return "".join(chars), ns_to_s

    tok_text = " ".join(_basic_tokenize(orig_text, lower_case))
    start_position = tok_text.find(pred_text)
    if start_position == -1:
        return orig_text
    end_position = start_position + len(pred_text) - 1
    orig_ns_text, orig_ns_to_s = strip_spaces(orig_text)
    tok_ns_text, tok_ns_to_s = strip_spaces(tok_text)
    if len(orig_ns_text) != len(tok_ns_text):
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in tok_ns_to_s.items()}
    if start_position not in tok_s_to_ns or tok_s_to_ns[start_position] not in orig_ns_to_s:
        return orig_text
    if end_position not in tok_s_to_ns or tok_s_to_ns[end_position] not in orig_ns_to_s:
        return orig_text
    return orig_text[orig_ns_to_s[tok_s_to_ns[start_position]]: orig_ns_to_s[tok_s_to_ns[end_position]] + 1]


def squad_predictions(examples: Sequence[QAExample], metas: Sequence[QAFeatureMeta], start_top_log_probs: np.ndarray,
                      start_top_index: np.ndarray, end_top_log_probs: np.ndarray, end_top_index: np.ndarray,
                      answerable_logits: np.ndarray, n_best_size: int = 20, max_answer_length: int = 30,
                      lower_case: bool = True) -> tuple[dict[str, str], dict[str, float]]:
    """The joint-prediction decoding of qa_metrics.write_predictions.

    Inputs are per window: start_top_* [F, K], end_top_* [F, K, K], answerable_logits [F]. Returns the best
    non-empty answer text per question and its null score (the minimum answerable logit over its windows;
    higher means "no answer").
    """
    by_example = collections.defaultdict(list)
    for feature_index, meta in enumerate(metas):
        by_example[meta.example_index].append(feature_index)
    predictions, null_scores = {}, {}
    for example_index, example in enumerate(examples):
        prelim = []
        score_null = 1e6
        for f in by_example.get(example_index, []):
            meta = metas[f]
            score_null = min(score_null, float(answerable_logits[f]))
            for i, start in enumerate(start_top_index[f]):
                for j, end in enumerate(end_top_index[f, i]):
                    start, end = int(start), int(end)
                    if start >= len(meta.tokens) or end >= len(meta.tokens) or start == 0:
                        continue
                    if start not in meta.token_to_orig_map or end not in meta.token_to_orig_map:
                        continue
                    if not meta.token_is_max_context.get(start, False) or end < start:
                        continue
                    if end - start + 1 > max_answer_length:
                        continue
                    prelim.append((float(start_top_log_probs[f, i]) + float(end_top_log_probs[f, i, j]), f,
                                   start, end))
        prelim.sort(key=lambda p: p[0], reverse=True)
        best_text = None
        seen = set()
        for _, f, start, end in prelim:
            if len(seen) >= n_best_size:
                break
            meta = metas[f]
            tok_text = " ".join(meta.tokens[start:end + 1]).replace(" ##", "").replace("##", "")
            tok_text = " ".join(tok_text.strip().split())
            orig_start, orig_end = meta.token_to_orig_map[start], meta.token_to_orig_map[end]
            orig_text = " ".join(example.doc_tokens[orig_start:orig_end + 1])
            final_text = get_final_text(tok_text, orig_text, lower_case)
            if final_text in seen:
                continue
            seen.add(final_text)
            if best_text is None and final_text:
                best_text = final_text
        # The original's nonce answer when nothing valid was found.
        predictions[example.qas_id] = best_text if best_text is not None else "empty"
        null_scores[example.qas_id] = score_null
    return predictions, null_scores


# ---------------------------------------------------------------------------------------------------------
# Tagging (CoNLL column files)


@dataclasses.dataclass
class TaggingExample:
    words: list[str]
    tags: list[str]


def read_conll_file(path: str) -> list[TaggingExample]:
    """Whitespace-separated columns, the word first and its tag last; blank lines end sentences."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: config.data.dir should hold CoNLL column files train.txt "
                                "and dev.txt (word ... tag per line, blank line between sentences)")
    examples, words, tags = [], [], []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                if words:
                    examples.append(TaggingExample(words, tags))
                    words, tags = [], []
                continue
            if fields[0] == "-DOCSTART-":
                continue
            if len(fields) < 2:
                raise DataFormatError(f"{path}, line {line_number}: expected at least 2 whitespace-separated "
                                      f"columns (word ... tag), found {len(fields)}: {line.strip()!r}")
            tag = fields[-1]
            if tag != "O" and not (len(tag) > 1 and tag[0] in "BIES" and tag[1] == "-"):
                raise DataFormatError(f"{path}, line {line_number}: the last column {tag!r} is not a chunk tag "
                                      "(expected O or B-/I-/E-/S-TYPE)")
            words.append(fields[0])
            tags.append(tag)
    if words:
        examples.append(TaggingExample(words, tags))
    return examples


def read_conll_tfds(name: str, split: str, data_dir: str | None) -> list[TaggingExample]:
    builder, rows = _tfds_load(name, "train" if split == "train" else "validation", data_dir)
    names = builder.info.features["ner"].feature.names
    return [TaggingExample([_text(w) for w in row["tokens"]], [names[int(t)] for t in row["ner"]]) for row in rows]


def tagging_label_list(examples: Sequence[TaggingExample], scheme: str = "BIOES") -> list[str]:
    tags = set()
    for example in examples:
        tags.update(scoring.to_bioes(example.tags) if scheme == "BIOES" else example.tags)
    tags.add("O")
    return sorted(tags)


def featurize_tagging(examples: Sequence[TaggingExample], tokenizer, max_seq_length: int, label_list: Sequence[str],
                      scheme: str = "BIOES", segment_id: int = 1) -> dict[str, np.ndarray]:
    """[CLS] pieces [SEP]; labelled_positions point at each word's first piece (words past S are dropped).

    segment_id 1 everywhere matches the original tagging code (ELECTRA_REFERENCE.md section 6).
    """
    label_index = {tag: i for i, tag in enumerate(label_list)}
    n = len(examples)
    input_ids = np.full((n, max_seq_length), tokenizer.pad_id, np.int32)
    input_mask = np.zeros((n, max_seq_length), np.int32)
    positions = np.zeros((n, max_seq_length), np.int32)
    labels = np.zeros((n, max_seq_length), np.int32)
    label_mask = np.zeros((n, max_seq_length), np.float32)
    for i, example in enumerate(examples):
        tags = scoring.to_bioes(example.tags) if scheme == "BIOES" else list(example.tags)
        ids, word_count = [tokenizer.cls_id], 0
        for word, tag in zip(example.words, tags):
            pieces = tokenizer.encode(word) or [tokenizer.unk_id]
            if len(ids) + len(pieces) + 1 > max_seq_length:
                break
            positions[i, word_count] = len(ids)
            labels[i, word_count] = label_index.get(tag, label_index["O"])
            label_mask[i, word_count] = 1.0
            ids += pieces
            word_count += 1
        ids.append(tokenizer.sep_id)
        input_ids[i, : len(ids)] = ids
        input_mask[i, : len(ids)] = 1
    segment_ids = np.where(input_mask > 0, segment_id, 0).astype(np.int32)
    return {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids,
            "labeled_positions": positions, "labels": labels, "label_mask": label_mask}


# ---------------------------------------------------------------------------------------------------------
# One entry point per task


def _first_existing(folder: str, names: Sequence[str]) -> str:
    for name in names:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    return os.path.join(folder, names[0])


def task_folder(spec: TaskSpec, data_dir: str) -> str:
    """Accepts either the task's own folder or the glue_data root holding it."""
    if spec.glue_dir and os.path.isdir(os.path.join(data_dir, spec.glue_dir)):
        return os.path.join(data_dir, spec.glue_dir)
    return data_dir


def read_examples(spec: TaskSpec, split: str, data_config) -> list:
    """Examples of `split` ("train" or "dev") from config.data: local files (data.dir) or TFDS (data.tfds)."""
    use_tfds = bool(data_config.get("tfds", False))
    data_dir = data_config.get("dir", "")
    if not use_tfds and not data_dir:
        raise ValueError(f"no data for task {spec.name}: set --config.data.dir=FOLDER (the task's files in their "
                         f"standard layout) or --config.data.tfds=True with --config.data.tfds_data_dir=DIR "
                         f"(TFDS {spec.tfds_name or 'n/a'} prepared locally)")
    tfds_dir = data_config.get("tfds_data_dir", "") or None
    double = bool(data_config.get("double_unordered", True))
    if spec.kind in ("classification", "regression"):
        if use_tfds:
            return read_glue_tfds(spec, split, tfds_dir, double)
        folder = task_folder(spec, data_dir)
        return read_glue_file(spec, os.path.join(folder, "train.tsv" if split == "train" else spec.dev_file),
                              split, double)
    if spec.kind == "qa":
        if use_tfds:
            return read_squad_tfds(spec.tfds_name, split, tfds_dir, spec.squad_v2)
        version = "v2.0" if spec.squad_v2 else "v1.1"
        return read_squad_file(_first_existing(data_dir, [f"{split}-{version}.json", f"{split}.json"]), split,
                               spec.squad_v2)
    if use_tfds:
        if not spec.tfds_name:
            raise ValueError(f"task {spec.name} has no TFDS dataset; use --config.data.dir with CoNLL files")
        return read_conll_tfds(spec.tfds_name, split, tfds_dir)
    names = ["train.txt"] if split == "train" else ["dev.txt", "valid.txt", "testa.txt"]
    return read_conll_file(_first_existing(data_dir, names))
