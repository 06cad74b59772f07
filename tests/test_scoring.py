"""Fine-tuning metrics against scikit-learn / SciPy, hand-computed SQuAD cases and hand-counted spans."""

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from electra_jax.finetune import scoring


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 2, size=200)
    predictions = np.where(rng.rand(200) < 0.7, labels, 1 - labels)
    assert scoring.accuracy(labels, predictions) == pytest.approx(sklearn.metrics.accuracy_score(labels, predictions))
    assert scoring.binary_f1(labels, predictions) == pytest.approx(sklearn.metrics.f1_score(labels, predictions))
    assert scoring.matthews_corrcoef(labels, predictions) == pytest.approx(
        sklearn.metrics.matthews_corrcoef(labels, predictions))
    multi_labels, multi_predictions = rng.randint(0, 3, size=150), rng.randint(0, 3, size=150)
    assert scoring.matthews_corrcoef(multi_labels, multi_predictions) == pytest.approx(
        sklearn.metrics.matthews_corrcoef(multi_labels, multi_predictions))


def test_degenerate_mcc_and_f1_are_zero_like_sklearn():
    labels, constant = np.array([0, 1, 1, 0]), np.zeros(4, int)
    assert scoring.matthews_corrcoef(labels, constant) == sklearn.metrics.matthews_corrcoef(labels, constant) == 0.0
    assert scoring.binary_f1(labels, constant) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_correlations_match_scipy(seed):
    rng = np.random.RandomState(seed)
    x = rng.rand(300) * 5
    y = x + rng.randn(300)
    # Rounded values make ties, which Spearman must rank by their average.
    xr, yr = np.round(x), np.round(y)
    assert scoring.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y)[0])
    assert scoring.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y)[0])
    assert scoring.spearman(xr, yr) == pytest.approx(scipy.stats.spearmanr(xr, yr)[0])


# --- SQuAD: expected values computed by hand with the official rules -------------------------------------


def test_squad_normalization():
    assert scoring.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert scoring.normalize_answer("an apple, a pear and the fig.") == "apple pear and fig"
    assert scoring.normalize_answer("Theatre") == "theatre"  # only whole-word articles go


def test_squad_v1_several_gold_answers():
    gold = {"q1": ["Denver Broncos", "The Denver Broncos"],
            "q2": ["in 1984", "1984"],
            "q3": ["blue whale"]}
    predictions = {"q1": "the Denver Broncos.", "q2": "Los Angeles 1984", "q3": "red fox"}
    # q1: exact after normalization (1, F1 1). q2: vs "1984": P = 1/3, R = 1 -> F1 0.5; vs "in 1984":
    # common {1984} P = 1/3, R = 1/2 -> 0.4; max 0.5, exact 0. q3: nothing in common -> 0.
    result = scoring.squad_v1_scores(gold, predictions)
    assert result["exact"] == pytest.approx(100 * 1 / 3)
    assert result["f1"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)


def test_squad_v1_missing_prediction_counts_zero():
    result = scoring.squad_v1_scores({"a": ["x"], "b": ["y"]}, {"a": "x"})
    assert result == {"exact": 50.0, "f1": 50.0}


def test_squad_v2_no_answer_threshold_and_best_thresholds():
    gold = {"has1": ["Paris"], "has2": ["the river Seine"], "no1": [], "no2": [""]}
    predictions = {"has1": "Paris", "has2": "Seine", "no1": "London", "no2": "a cat"}
    na_probs = {"has1": 0.1, "has2": 0.6, "no1": 0.8, "no2": 0.3}
    # Raw scores: has1 EM 1 F1 1; has2 EM 0, F1: "river seine" vs "seine": P 1, R 1/2 -> 2/3;
    # no-answer questions have gold "" and a non-empty prediction: EM 0, F1 0.
    # Threshold 0.5: has2 (0.6) and no1 (0.8) are predicted unanswerable -> has2 0, no1 1.
    result = scoring.squad_v2_scores(gold, predictions, na_probs, na_prob_thresh=0.5)
    assert result["exact"] == pytest.approx(100 * (1 + 0 + 1 + 0) / 4)
    assert result["f1"] == pytest.approx(100 * (1 + 0 + 1 + 0) / 4)
    assert result["HasAns_exact"] == pytest.approx(50.0)
    assert result["NoAns_exact"] == pytest.approx(50.0)
    assert result["total"] == 4 and result["HasAns_total"] == 2 and result["NoAns_total"] == 2
    # find_best_thresh by hand, EM: start at 2 (both no-answer right when nothing is answered); sweep by na
    # prob: has1 (0.1) +1 -> 3 [best, thr 0.1]; no2 (0.3) -1 -> 2; has2 (0.6) +0 -> 2; no1 (0.8) -1 -> 1.
    assert result["best_exact"] == pytest.approx(75.0)
    assert result["best_exact_thresh"] == pytest.approx(0.1)
    # F1: 2 -> has1 3 (best, 0.1) -> no2 2 -> has2 2 + 2/3 -> no1 1 + 2/3.
    assert result["best_f1"] == pytest.approx(75.0)
    assert result["best_f1_thresh"] == pytest.approx(0.1)


def test_squad_v2_empty_prediction_on_no_answer_scores_one():
    gold = {"n": [], "h": ["x y"]}
    result = scoring.squad_v2_scores(gold, {"n": "", "h": ""}, {"n": 0.0, "h": 0.0}, na_prob_thresh=1.0)
    assert result["exact"] == 50.0 and result["f1"] == 50.0


# --- Span F1: hand counts -----------------------------------------------------------------------------------


def test_span_extraction_bio_and_bioes():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "B-ORG", "I-MISC"]
    # conlleval: an I after O starts a chunk; a type change ends and starts one.
    assert scoring.extract_spans(tags) == [(0, 1, "PER"), (3, 3, "LOC"), (4, 4, "LOC"), (5, 5, "ORG"),
                                           (6, 6, "MISC")]
    bioes = ["S-NP", "B-VP", "I-VP", "E-VP", "O", "B-NP", "E-NP", "E-NP"]
    assert scoring.extract_spans(bioes) == [(0, 0, "NP"), (1, 3, "VP"), (5, 6, "NP"), (7, 7, "NP")]
    assert scoring.to_bioes(["B-NP", "I-NP", "I-NP", "B-NP", "O", "I-VP"]) == ["B-NP", "I-NP", "E-NP", "S-NP", "O",
                                                                             "S-VP"]


def test_span_f1_hand_count():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-MISC", "O"]]
    # gold chunks: PER(0-1), LOC(3), ORG(0), MISC(2-3) = 4; predicted: PER(0-1), ORG(3), ORG(0), MISC(2) = 4;
    # correct: PER(0-1), ORG(0) = 2 -> P = R = F1 = 0.5.
    result = scoring.span_f1(gold, pred)
    assert result == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    pred_bioes = [["B-PER", "E-PER", "O", "S-LOC"], ["S-ORG", "O", "B-MISC", "E-MISC"]]
    assert scoring.span_f1(gold, pred_bioes)["f1"] == 1.0
