"""SQuAD 1.1 and 2.0: extractive question answering with the original ELECTRA joint start/end head.

Reads the SQuAD JSON files (`config.data.dir`: train-v1.1.json/dev-v1.1.json, train-v2.0.json/dev-v2.0.json,
or train.json/dev.json) or TFDS `squad/v1.1` / `squad/v2.0` prepared locally. Featurization follows the
original `finetune/qa/qa_tasks.py` (ELECTRA_REFERENCE.md section 6): whitespace words -> word pieces,
`[CLS] question(<=64) [SEP] doc span [SEP]`, sliding windows with a document stride, and answers outside a
training window point at [CLS]. Decoding is qa_metrics.py's n-best search (maximal-context windows, lengths
<= max_answer_length) mapped back to the text; scores are the official v1.1 / v2.0 evaluation scripts'.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from electra_jax.data.tokenization import strips_accents
from electra_jax.finetune import scoring
from electra_jax.finetune.task import (
    DataFormatError,
    Task,
    TaskData,
    as_text,
    first_existing,
    glorot_dense,
    require_data_source,
    tfds_load,
)
from electra_jax.modeling import gelu

MASK_PENALTY = 1000.0  # the original adds -1000 to logits outside the answer mask
EVAL_OUTPUTS = ("start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "answerable_logit")


@dataclasses.dataclass(frozen=True)
class SquadTask(Task):
    name: str
    metrics: tuple[str, ...]
    squad_v2: bool = False
    tfds_name: str = ""
    epochs: int = 2
    max_seq_length: int = 512

    def read(self, split: str, data_config) -> list[QAExample]:
        require_data_source(self, data_config, self.tfds_name)
        if data_config.get("tfds", False):
            return read_squad_tfds(self.tfds_name, split, data_config.get("tfds_data_dir", "") or None, self.squad_v2)
        version = "v2.0" if self.squad_v2 else "v1.1"
        path = first_existing(data_config.get("dir", ""), [f"{split}-{version}.json", f"{split}.json"])
        return read_squad_file(path, split, self.squad_v2)

    def featurize(self, train_examples, dev_examples, tokenizer, config) -> TaskData:
        d = config.data
        args = (tokenizer, d.max_seq_length, d.doc_stride, d.max_query_length)
        train, _ = featurize_squad(train_examples, *args, is_training=True)
        dev, dev_metas = featurize_squad(dev_examples, *args, is_training=False)
        return TaskData(train, dev, num_outputs=1, num_train_examples=len(train_examples), dev_examples=dev_examples,
                        extras={"metas": dev_metas})

    def head(self, num_outputs: int, config) -> nn.Module:
        return QAHead(config.qa.beam_size, config.qa.hidden_units)

    def loss(self, outputs, batch, config) -> jax.Array:
        start_loss = optax.softmax_cross_entropy_with_integer_labels(outputs["start_logits"], batch["start_positions"])
        end_loss = optax.softmax_cross_entropy_with_integer_labels(outputs["end_logits"], batch["end_positions"])
        answerable_loss = optax.sigmoid_binary_cross_entropy(outputs["answerable_logit"], batch["is_impossible"])
        return jnp.mean((start_loss + end_loss) / 2.0 + config.qa.answerable_weight * answerable_loss)

    def eval_outputs(self, outputs):
        return {k: outputs[k] for k in EVAL_OUTPUTS}

    def score(self, data: TaskData, outputs, config, output_dir=None) -> dict[str, float]:
        predictions, null_scores = squad_predictions(
            data.dev_examples, data.extras["metas"], *(outputs[k] for k in EVAL_OUTPUTS),
            config.qa.n_best_size, config.qa.max_answer_length, config.data.lower_case,
            config.data.get("strip_accents"))
        if output_dir:
            from electra_jax.checkpoints import as_path

            folder = as_path(output_dir)
            (folder / "predictions.json").write_text(json.dumps(predictions, indent=1))
            if self.squad_v2:
                (folder / "null_odds.json").write_text(json.dumps(null_scores, indent=1))
        gold = {e.qas_id: e.gold_answers for e in data.dev_examples}
        if self.squad_v2:
            return scoring.squad_v2_scores(gold, predictions, null_scores, config.qa.na_threshold)
        return scoring.squad_v1_scores(gold, predictions)


TASKS = (
    SquadTask("squad_v1", ("exact", "f1"), tfds_name="squad/v1.1"),
    SquadTask("squad_v2", ("exact", "f1", "best_exact", "best_f1"), squad_v2=True, tfds_name="squad/v2.0"),
)


# ---------------------------------------------------------------------------------------------------------
# Head


class QAHead(nn.Module):
    """Start logits, end logits conditioned on the start (XLNet-style), and the answerability logit."""

    beam_size: int = 20
    hidden_units: int = 512

    def setup(self):
        self.start_logits_dense = glorot_dense(1, "start_logits")
        self.qa_hidden = glorot_dense(self.hidden_units, "qa_hidden")
        self.end_logits_dense = glorot_dense(1, "end_logits")
        self.answerable_hidden = glorot_dense(self.hidden_units, "answerable_hidden")
        self.answerable_logit_dense = glorot_dense(1, "answerable_logit")

    def _end_logits(self, start_features, end_features, answer_mask):
        logits = self.end_logits_dense(gelu(self.qa_hidden(jnp.concatenate([start_features, end_features], -1))))
        return logits[..., 0] + MASK_PENALTY * (answer_mask - 1.0)

    def __call__(self, hidden, batch, deterministic: bool = True, training: bool = False):
        """Training (end logits conditioned on the gold start): start/end logits [B, S], answerable logit [B].

        Evaluation: also the beam: start_top_log_probs/index [B, K], end_top_log_probs/index [B, K, K].
        """
        input_mask, segment_ids = batch["input_mask"], batch["segment_ids"]
        start_positions = batch["start_positions"] if training else None
        hidden = hidden.astype(jnp.float32)
        seq_len = hidden.shape[1]
        # The answer may be any context token, or [CLS] (position 0) for "no answer in this window".
        answer_mask = input_mask.astype(jnp.float32) * segment_ids.astype(jnp.float32)
        answer_mask = answer_mask + jax.nn.one_hot(0, seq_len, dtype=jnp.float32)
        start_logits = self.start_logits_dense(hidden)[..., 0] + MASK_PENALTY * (answer_mask - 1.0)
        out = {"start_logits": start_logits}
        if start_positions is not None:
            start_features = jnp.take_along_axis(hidden, start_positions[:, None, None].astype(jnp.int32), axis=1)
            start_features = jnp.broadcast_to(start_features, hidden.shape)
            out["end_logits"] = self._end_logits(start_features, hidden, answer_mask)
        else:
            k = min(self.beam_size, seq_len)
            start_top_log_probs, start_top_index = jax.lax.top_k(jax.nn.log_softmax(start_logits), k)
            start_features = jnp.take_along_axis(hidden, start_top_index[..., None], axis=1)  # [B, K, H]
            start_features = jnp.broadcast_to(start_features[:, :, None, :],
                                              (hidden.shape[0], k, seq_len, hidden.shape[-1]))
            end_features = jnp.broadcast_to(hidden[:, None], start_features.shape)
            end_logits = self._end_logits(start_features, end_features, answer_mask[:, None, :])
            end_top_log_probs, end_top_index = jax.lax.top_k(jax.nn.log_softmax(end_logits), k)
            out.update(start_top_log_probs=start_top_log_probs, start_top_index=start_top_index,
                       end_top_log_probs=end_top_log_probs, end_top_index=end_top_index)
        # Answerability from [CLS] and the start-probability-weighted mean state (answerable_uses_start_logits).
        start_probs = jax.nn.softmax(start_logits, axis=-1)
        start_summary = jnp.einsum("bs,bsh->bh", start_probs, hidden)
        features = gelu(self.answerable_hidden(jnp.concatenate([hidden[:, 0], start_summary], -1)))
        out["answerable_logit"] = self.answerable_logit_dense(features)[..., 0]
        return out


# ---------------------------------------------------------------------------------------------------------
# Reading and windows


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
    _, rows = tfds_load(name, "train" if split == "train" else "validation", data_dir)
    paragraphs = []
    for row in rows:
        texts = [as_text(t) for t in row["answers"]["text"]]
        starts = [int(s) for s in row["answers"]["answer_start"]]
        qa = {"id": as_text(row["id"]), "question": as_text(row["question"]),
              "answers": [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]}
        if "is_impossible" in row:
            qa["is_impossible"] = bool(row["is_impossible"])
        paragraphs.append({"context": as_text(row["context"]), "qas": [qa]})
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




# ---------------------------------------------------------------------------------------------------------
# Decoding


def _basic_tokenize(text: str, lower_case: bool, strip_accents: bool | None = None) -> list[str]:
    """The original BasicTokenizer (cleaning, lower-casing, accent stripping, punctuation splits); accents go as
    the WordPiece tokenizer strips them (None: exactly when lower-casing, as the original)."""
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=strips_accents(lower_case, strip_accents),
                                            lowercase=lower_case)
    return [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalizer.normalize_str(text))]


def get_final_text(pred_text: str, orig_text: str, lower_case: bool, strip_accents: bool | None = None) -> str:
    """Projects the normalized word-piece answer back onto the original text (qa_metrics.get_final_text), with the
    tokenizer's casing and accent handling (a tokenizer that keeps accents predicts 'köln', not 'koln')."""

    def strip_spaces(text):
        chars, ns_to_s = [], {}
        for i, c in enumerate(text):
            if c == " ":
                continue
            ns_to_s[len(chars)] = i
            chars.append(c)
        return "".join(chars), ns_to_s

    tok_text = " ".join(_basic_tokenize(orig_text, lower_case, strip_accents))
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
                      lower_case: bool = True, strip_accents: bool | None = None
                      ) -> tuple[dict[str, str], dict[str, float]]:
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
            final_text = get_final_text(tok_text, orig_text, lower_case, strip_accents)
            if final_text in seen:
                continue
            seen.add(final_text)
            if best_text is None and final_text:
                best_text = final_text
        # The original's nonce answer when nothing valid was found.
        predictions[example.qas_id] = best_text if best_text is not None else "empty"
        null_scores[example.qas_id] = score_null
    return predictions, null_scores

