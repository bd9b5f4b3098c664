"""Entity counts, precision/recall/F1 from counts, and paired significance tests.

One formula turns counts into scores (``prf``): seqeval's, so that figures computed here equal
``llmner.metrics``' to the last bit. Counts per sentence (``sentence_counts``) summed over any set
of sentences give that set's micro F1, which is what makes the bootstrap a matter of sums.
"""

from __future__ import annotations

import math

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities


def prf(tp, n_pred, n_gold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 from true positives, predicted and gold counts (any matching shapes).

    0 where a denominator is 0 (seqeval's ``zero_division=0``); F1 is ``2PR / (P + R)`` as seqeval
    computes it, so that the floats are the same as its.
    """
    tp, n_pred, n_gold = (np.asarray(x, dtype=np.float64) for x in (tp, n_pred, n_gold))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = np.where(n_gold > 0, tp / n_gold, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts (..., 3) of (correct, predicted, gold) -> (...)."""
    return prf(counts[..., 0], counts[..., 1], counts[..., 2])[2]


def sentence_counts(gold: list[list[str]], pred: list[list[str]]) -> np.ndarray:
    """(S, 3) per sentence: correct entities, predicted entities, gold entities (seqeval's entities).

    Summed over any set of sentences they give that set's micro entity F1 exactly as seqeval
    (and conlleval) compute it, since no entity crosses a sentence boundary.
    """
    out = np.zeros((len(gold), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        gs, ps = set(get_entities(g)), set(get_entities(p))
        out[i] = (len(gs & ps), len(ps), len(gs))
    return out


def resample_weights(n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, n): how often each of ``n`` items is drawn in each of ``samples`` draws of ``n`` with replacement.

    The draws are ``rng.integers(0, n, n)`` once per sample, in order (one call, the same stream).
    """
    idx = rng.integers(0, n, (samples, n))  # (B, n)
    flat = (idx + n * np.arange(samples)[:, None]).ravel()  # sample b's items at b*n .. b*n + n - 1
    return np.bincount(flat, minlength=samples * n).reshape(samples, n)


def paired_bootstrap(a: list[np.ndarray], b: list[np.ndarray], samples: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap over test sentences for the entity F1 of systems A and B.

    Each system gives one (S, 3) count array per seed (``sentence_counts``), on the same S
    sentences. A bootstrap sample draws S sentences with replacement, the same ones for both
    systems and every seed; a system's score on it is its F1 averaged over its seeds (seeds
    pooled). The p-value is two-sided, from the bootstrap distribution of the difference shifted
    to mean 0 (Berg-Kirkpatrick et al., 2012): how often a difference as large as the one seen
    arises from resampling the test set alone. Seed-to-seed variation is the t-test's job.

    Returns:
        ``delta`` (F1 of A minus B on the full test set), ``ci_low``/``ci_high`` (95% percentile
        interval of the difference) and ``p``.
    """
    n = {len(c) for c in a + b}
    if len(n) != 1:
        raise ValueError(f"systems were scored on different test sets (sentence counts {sorted(n)})")
    S = n.pop()
    A, B = np.stack(a), np.stack(b)  # (seeds, S, 3)
    delta = float(f1_from_counts(A.sum(1)).mean() - f1_from_counts(B.sum(1)).mean())
    W = resample_weights(S, samples, np.random.default_rng(seed))  # (samples, S)
    f1_a = f1_from_counts(np.einsum("bs,ksc->kbc", W, A)).mean(0)  # (seeds, samples, 3) -> (samples,)
    f1_b = f1_from_counts(np.einsum("bs,ksc->kbc", W, B)).mean(0)
    deltas = f1_a - f1_b
    extreme = np.abs(deltas - deltas.mean()) >= abs(delta) - 1e-12
    return {
        "delta": delta,
        "ci_low": float(np.percentile(deltas, 2.5)),
        "ci_high": float(np.percentile(deltas, 97.5)),
        "p": float((extreme.sum() + 1) / (samples + 1)),
    }


def paired_ttest(a: list[float], b: list[float]) -> float:
    """Two-sided paired t-test over seeds (A's and B's test F1, paired by seed): the p-value.

    ``nan`` with fewer than 2 pairs; 1.0 when every pair is equal (no difference, zero variance).
    """
    from scipy.stats import ttest_rel

    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return math.nan
    if np.allclose(d, d[0]):
        return 1.0 if abs(d[0]) < 1e-12 else 0.0  # a constant non-zero difference: t is infinite
    return float(ttest_rel(a, b).pvalue)
