"""``llmner.evaluation.statistics`` and ``llmner.metrics`` against hand-computed values and plain-loop oracles."""

import math

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from llmner.evaluation.statistics import (
    f1_from_counts,
    paired_bootstrap,
    paired_ttest,
    prf,
    resample_weights,
    sentence_counts,
)
from llmner.metrics import entity_scores, field_scores


# --- counts and scores by hand -----------------------------------------------------------------
def test_prf_by_hand():
    p, r, f = prf(3, 4, 5)  # 3 correct of 4 predicted, 5 gold
    assert (p, r) == (0.75, 0.6) and f == pytest.approx(2 * 0.75 * 0.6 / 1.35) and f == pytest.approx(6 / 9)
    assert [float(x) for x in prf(0, 0, 0)] == [0.0, 0.0, 0.0]  # nothing predicted, nothing to find: 0, not nan
    assert [float(x) for x in prf(0, 2, 0)] == [0.0, 0.0, 0.0]
    assert [float(x) for x in prf(0, 0, 2)] == [0.0, 0.0, 0.0]
    assert f1_from_counts(np.array([[3, 4, 5], [2, 2, 2], [0, 0, 0]])).tolist() == pytest.approx([6 / 9, 1.0, 0.0])


def test_sentence_counts_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "I-ORG", "O"], ["O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG", "B-ORG"], ["B-LOC"]]
    # sentence 1: PER right, LOC predicted as ORG; 2: an I-ORG after O is an entity (conlleval), found,
    # plus a spurious ORG; 3: one spurious LOC
    assert sentence_counts(gold, pred).tolist() == [[1, 2, 2], [1, 2, 1], [0, 1, 0]]


def test_summed_counts_give_seqeval_f1():
    rng = np.random.default_rng(0)
    tags = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    gold = [list(rng.choice(tags, rng.integers(1, 9))) for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else str(rng.choice(tags)) for t in s] for s in gold]
    assert f1_from_counts(sentence_counts(gold, pred).sum(0)) == f1_score(gold, pred)  # the same float


def test_entity_scores_equal_seqevals_separate_calls():
    """One ``classification_report`` gives the figures that four seqeval calls gave, to the last bit."""
    rng = np.random.default_rng(1)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    gold = [list(rng.choice(tags, rng.integers(1, 12))) for _ in range(300)]
    pred = [[t if rng.random() < 0.7 else str(rng.choice(tags)) for t in s] for s in gold]
    got = entity_scores(gold, pred, "test")
    assert got["test/precision"] == precision_score(gold, pred, zero_division=0)
    assert got["test/recall"] == recall_score(gold, pred, zero_division=0)
    assert got["test/f1"] == f1_score(gold, pred, zero_division=0)
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    for t in ("PER", "LOC", "ORG"):
        assert got[f"test/f1_{t}"] == report[t]["f1-score"]
    assert set(got) == {f"test/{m}" for m in ("precision", "recall", "f1", "accuracy")} | {
        f"test/{m}_{t}" for m in ("precision", "recall", "f1") for t in ("PER", "LOC", "ORG")}


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    s = entity_scores(gold, pred, "val")
    # PER and ORG right; LOC missed in sentence 1 and spurious in 2: 2 correct of 3 predicted, 3 gold
    assert s["val/precision"] == pytest.approx(2 / 3) and s["val/recall"] == pytest.approx(2 / 3)
    assert s["val/f1"] == pytest.approx(2 / 3) and s["val/f1_LOC"] == 0.0 and s["val/f1_PER"] == 1.0
    assert s["val/accuracy"] == pytest.approx(4 / 6)
    assert entity_scores([["O"]], [["O"]], "x")["x/f1"] == 0.0


def test_field_scores_use_the_shared_formula():
    gold = [{"PER": ["Ann", "Bo"], "AGE": [47]}, {"PER": ["Cy"]}]
    pred = [{"PER": ["Ann"], "AGE": ["47", "50"]}, {}]
    s = field_scores(gold, pred, "t")
    # 2 correct (Ann, 47) of 3 predicted, 4 gold
    assert (s["t/field_precision"], s["t/field_recall"]) == (2 / 3, 0.5)
    assert s["t/field_f1"] == float(prf(2, 3, 4)[2]) == pytest.approx(4 / 7)
    assert s["t/field_f1_AGE"] == pytest.approx(2 / 3) and s["t/field_f1_PER"] == pytest.approx(0.5)


# --- the bootstrap against a plain loop --------------------------------------------------------
def bootstrap_loop(a, b, samples, seed):
    """The paired bootstrap written out: one resample at a time, F1 as 2 tp / (predicted + gold)."""
    def f1(counts):  # (S, 3) -> micro F1
        tp, n_pred, n_gold = counts.sum(0)
        return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0

    rng = np.random.default_rng(seed)
    S = len(a[0])
    deltas = []
    for _ in range(samples):
        idx = rng.integers(0, S, S)
        deltas.append(np.mean([f1(x[idx]) for x in a]) - np.mean([f1(x[idx]) for x in b]))
    deltas = np.array(deltas)
    delta = np.mean([f1(x) for x in a]) - np.mean([f1(x) for x in b])
    p = (np.sum(np.abs(deltas - deltas.mean()) >= abs(delta) - 1e-12) + 1) / (samples + 1)
    return {"delta": delta, "ci_low": np.percentile(deltas, 2.5), "ci_high": np.percentile(deltas, 97.5), "p": p}


# A: 3 correct of 4 predicted, 5 gold (F1 6/9); B: 2 of 5, 5 gold (F1 4/10)
A = np.array([[1, 1, 1], [0, 1, 1], [2, 2, 2], [0, 0, 1]])
B = np.array([[1, 1, 1], [1, 1, 1], [0, 2, 2], [0, 1, 1]])


def test_bootstrap_equals_a_plain_loop():
    got = paired_bootstrap([A], [B], samples=200, seed=7)
    assert got["delta"] == pytest.approx(6 / 9 - 4 / 10)
    want = bootstrap_loop([A], [B], 200, 7)
    assert got == pytest.approx(want, abs=1e-12)
    # seeds pooled: two seeds per system, each resample scores every seed on the same sentences
    a2, b2 = [A, A[::-1].copy()], [B, np.roll(B, 1, axis=0)]
    assert paired_bootstrap(a2, b2, samples=150, seed=3) == pytest.approx(bootstrap_loop(a2, b2, 150, 3), abs=1e-12)


def test_resample_weights_count_the_draws_of_a_loop():
    rng = np.random.default_rng(5)
    loop = [np.bincount(rng.integers(0, 6, 6), minlength=6) for _ in range(40)]
    assert resample_weights(6, 40, np.random.default_rng(5)).tolist() == np.stack(loop).tolist()


def test_bootstrap_of_identical_systems_by_hand():
    """Every resampled difference is 0, so every one is as large as the observed 0: p = 1, interval [0, 0]."""
    out = paired_bootstrap([A], [A], samples=99)
    assert out == {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p": 1.0}


def test_bootstrap_refuses_different_test_sets():
    with pytest.raises(ValueError, match="different test sets"):
        paired_bootstrap([np.zeros((3, 3))], [np.zeros((4, 3))])


# --- the t-test by hand ------------------------------------------------------------------------
def test_ttest_by_hand():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3 on 2 degrees of
    # freedom, whose two-sided p is 1 - t / sqrt(t^2 + 2) (Student's t with 2 df in closed form)
    t = 2 * math.sqrt(3)
    assert paired_ttest([0.9, 0.8, 0.7], [0.8, 0.6, 0.4]) == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert paired_ttest([0.8, 0.6, 0.4], [0.9, 0.8, 0.7]) == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert math.isnan(paired_ttest([0.9], [0.7]))  # one seed: no test
    assert paired_ttest([0.8, 0.82], [0.8, 0.82]) == 1.0  # no difference at all
    assert paired_ttest([0.9, 0.92], [0.8, 0.82]) == 0.0  # the same non-zero difference every seed: t infinite


def test_bootstrap_finds_a_clear_difference():
    """200 sentences; A drops 2% of its first entities, B half of them: A is better beyond doubt."""
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O"], ["B-LOC", "O"], ["O", "O"]] * 50

    def drop_first(rate, seed):
        rng = np.random.default_rng(seed)
        return [["O"] + t[1:] if rng.random() < rate else list(t) for t in gold]

    good = [sentence_counts(gold, drop_first(0.02, s)) for s in (1, 2, 3)]
    bad = [sentence_counts(gold, drop_first(0.5, s)) for s in (1, 2, 3)]
    out = paired_bootstrap(good, bad, samples=300)
    assert out["delta"] > 0.1 and out["p"] < 0.01 and out["ci_low"] > 0
