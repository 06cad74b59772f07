"""Fine-tuning metrics, computed as the original ELECTRA reports them (ELECTRA_REFERENCE.md section 6).

Classification and regression metrics return fractions (accuracy 0.83, not 83). The SQuAD scorers follow
the official evaluation scripts (v1.1 `evaluate-v1.1.py`, v2.0 `evaluate-v2.0.py`) and, like them, return
percentages. Span F1 for tagging extracts chunks as conlleval does (BIO, IOB1 and BIOES tags).

Everything here is plain numpy/Python: no JAX, no TensorFlow.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Classification and regression


def accuracy(labels: Sequence[int], predictions: Sequence[int]) -> float:
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float(np.mean(labels == predictions)) if labels.size else 0.0


def binary_f1(labels: Sequence[int], predictions: Sequence[int], positive: int = 1) -> float:
    """F1 of the positive class (what GLUE reports for MRPC and QQP); 0 when there are no true positives."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    tp = float(np.sum((predictions == positive) & (labels == positive)))
    fp = float(np.sum((predictions == positive) & (labels != positive)))
    fn = float(np.sum((predictions != positive) & (labels == positive)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(labels: Sequence[int], predictions: Sequence[int]) -> float:
    """Matthews correlation (the multiclass form, equal to the binary one for two classes); 0 if undefined."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    classes = np.union1d(labels, predictions)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), np.float64)
    for t, p in zip(labels, predictions):
        confusion[index[t], index[p]] += 1
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    cov_tp = correct * n - np.dot(true_counts, pred_counts)
    cov_tt = n * n - np.dot(true_counts, true_counts)
    cov_pp = n * n - np.dot(pred_counts, pred_counts)
    if cov_tt * cov_pp == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
    return float(np.sum(xc * yc) / denominator) if denominator > 0 else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (what Spearman's rho uses)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return pearson(_average_ranks(x), _average_ranks(y))


def classification_metrics(task_metrics: Sequence[str], labels, predictions) -> dict[str, float]:
    """The named metrics of one task (names as in `finetune.tasks.TASKS[...].metrics`, the fine-tuning registry)."""
    functions = {"accuracy": accuracy, "f1": binary_f1, "mcc": matthews_corrcoef, "pearson": pearson,
                 "spearman": spearman}
    out = {}
    for name in task_metrics:
        out[name] = functions[name](labels, predictions)
    return out


# ---------------------------------------------------------------------------------------------------------
# SQuAD (official evaluation algorithm)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace (the official rule)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_score(prediction: str, gold: str) -> int:
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1_score_v1(prediction: str, gold: str) -> float:
    """SQuAD 1.1 token F1: 0 when nothing overlaps (including when either side is empty)."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score_v2(prediction: str, gold: str) -> float:
    """SQuAD 2.0 token F1: if either side is empty, 1 when both are and 0 otherwise."""
    gold_tokens, pred_tokens = _answer_tokens(gold), _answer_tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_v1_scores(gold_answers: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """{"exact": .., "f1": ..} in percent: the max over gold answers, averaged over all questions.

    Questions without a prediction count as 0, as in evaluate-v1.1.py.
    """
    exact = f1 = 0.0
    for qid, golds in gold_answers.items():
        if qid not in predictions:
            continue
        pred = predictions[qid]
        exact += max(exact_score(pred, g) for g in golds)
        f1 += max(f1_score_v1(pred, g) for g in golds)
    total = max(1, len(gold_answers))
    return {"exact": 100.0 * exact / total, "f1": 100.0 * f1 / total}


def _best_threshold(predictions, scores, na_probs, qid_has_answer):
    """find_best_thresh of evaluate-v2.0.py: sweep thresholds over the sorted no-answer scores."""
    num_no_answer = sum(1 for has in qid_has_answer.values() if not has)
    current = best = num_no_answer
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if qid_has_answer[qid]:
            diff = scores[qid]
        elif predictions[qid]:
            diff = -1
        else:
            diff = 0
        current += diff
        if current > best:
            best = current
            best_thresh = na_probs[qid]
    return 100.0 * best / len(scores), best_thresh


def squad_v2_scores(gold_answers: Mapping[str, Sequence[str]], predictions: Mapping[str, str],
                    na_probs: Mapping[str, float] | None = None, na_prob_thresh: float = 1.0) -> dict[str, float]:
    """evaluate-v2.0.py: exact/f1 after the no-answer threshold, HasAns/NoAns splits, best_exact/best_f1.

    `gold_answers[qid]` lists the gold texts (empty for an unanswerable question); answers that normalize
    to "" are dropped and a question left with none has the single gold answer "". A question is
    predicted unanswerable when na_probs[qid] > na_prob_thresh (the ELECTRA scorer passes its answerable
    logit as the "probability" and -2.75 as the threshold).
    """
    na_probs = dict(na_probs) if na_probs is not None else {qid: 0.0 for qid in predictions}
    has_answer = {}
    exact_raw, f1_raw = {}, {}
    for qid, golds in gold_answers.items():
        golds = [g for g in golds if normalize_answer(g)] or [""]
        has_answer[qid] = golds != [""]
        if qid not in predictions:
            continue
        pred = predictions[qid]
        exact_raw[qid] = max(exact_score(pred, g) for g in golds)
        f1_raw[qid] = max(f1_score_v2(pred, g) for g in golds)

    def thresholded(raw):
        out = {}
        for qid, score in raw.items():
            predicted_no_answer = na_probs.get(qid, 0.0) > na_prob_thresh
            out[qid] = float(not has_answer[qid]) if predicted_no_answer else score
        return out

    exact_t, f1_t = thresholded(exact_raw), thresholded(f1_raw)
    total = len(gold_answers)
    result = {"exact": 100.0 * sum(exact_t.values()) / total, "f1": 100.0 * sum(f1_t.values()) / total,
              "total": total}
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [q for q in gold_answers if has_answer[q] == wanted]
        if qids:
            result[f"{name}_exact"] = 100.0 * sum(exact_t.get(q, 0.0) for q in qids) / len(qids)
            result[f"{name}_f1"] = 100.0 * sum(f1_t.get(q, 0.0) for q in qids) / len(qids)
            result[f"{name}_total"] = len(qids)
    full_predictions = {q: predictions.get(q, "") for q in gold_answers}
    result["best_exact"], result["best_exact_thresh"] = _best_threshold(full_predictions, exact_raw, na_probs,
                                                                        has_answer)
    result["best_f1"], result["best_f1_thresh"] = _best_threshold(full_predictions, f1_raw, na_probs, has_answer)
    return result


# ---------------------------------------------------------------------------------------------------------
# Tagging: conlleval chunk extraction and span F1


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a bare type-less tag 'B' -> ('B', '')."""
    if tag in ("O", "", "."):
        return "O", ""
    prefix, _, chunk_type = tag.partition("-")
    return prefix, chunk_type


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, chunk_type: str) -> bool:
    return (prev_tag in ("E", "S")
            or (prev_tag == "B" and tag in ("B", "S", "O"))
            or (prev_tag == "I" and tag in ("B", "S", "O"))
            or (prev_tag != "O" and prev_type != chunk_type))


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, chunk_type: str) -> bool:
    return (tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("I", "E"))
            or (tag != "O" and prev_type != chunk_type))


def extract_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Chunks as (start, end inclusive, type), by conlleval's startOfChunk/endOfChunk rules (with S and E)."""
    spans = []
    prev_tag, prev_type, start = "O", "", None
    for i, raw in enumerate(list(tags) + ["O"]):
        tag, chunk_type = _split_tag(raw)
        if start is not None and _end_of_chunk(prev_tag, tag, prev_type, chunk_type):
            spans.append((start, i - 1, prev_type))
            start = None
        if _start_of_chunk(prev_tag, tag, prev_type, chunk_type) and tag != "O":
            start = i
        prev_tag, prev_type = tag, chunk_type
    return spans


def span_f1(gold_sequences: Iterable[Sequence[str]], predicted_sequences: Iterable[Sequence[str]]) -> dict[str, float]:
    """Micro precision/recall/F1 over exactly matching chunks of all sentences (fractions)."""
    gold_total = pred_total = correct = 0
    for gold, pred in zip(gold_sequences, predicted_sequences):
        gold_spans, pred_spans = set(extract_spans(gold)), set(extract_spans(pred))
        gold_total += len(gold_spans)
        pred_total += len(pred_spans)
        correct += len(gold_spans & pred_spans)
    precision = correct / pred_total if pred_total else 0.0
    recall = correct / gold_total if gold_total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def to_bioes(tags: Sequence[str]) -> list[str]:
    """Rewrites BIO/IOB1 tags as BIOES over the same chunks (the original trains chunking on BIOES)."""
    out = ["O"] * len(tags)
    for start, end, chunk_type in extract_spans(tags):
        suffix = f"-{chunk_type}" if chunk_type else ""
        if start == end:
            out[start] = "S" + suffix
        else:
            out[start] = "B" + suffix
            for i in range(start + 1, end):
                out[i] = "I" + suffix
            out[end] = "E" + suffix
    return out
