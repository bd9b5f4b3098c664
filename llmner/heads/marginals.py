"""Forward-backward over a linear-chain CRF, and the probability of a labelled span.

pytorch-crf (``torchcrf``) runs the forward algorithm (the likelihood) and Viterbi, but has no
backward pass and no marginals, and ``torch-struct`` is unmaintained; the recursions are ten lines
each, so they are written here. Everything is in log space, over the same scores the CRF uses
(``ConstrainedCRF``'s masked transitions), so forbidden IOB2 paths get their (vanishing) share.

Conventions, for one row of ``n`` real words and tags ``y``:
    score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_t trans[y_{t-1}, y_t] + end[y_{n-1}]
    alpha[t, k] = log sum of exp(score of the prefix y_0..y_t) over prefixes with y_t = k
                  (start, emissions 0..t and the transitions between them)
    beta[t, k]  = log sum of exp(score of the suffix after t) over suffixes, given y_t = k
                  (transitions from t on, emissions t+1..n-1 and the end score)
    log Z       = logsumexp_k(alpha[n-1, k] + end[k])
so that ``P(y_t = k) = exp(alpha[t, k] + beta[t, k] - log Z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def forward_backward(emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                     transitions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``alpha`` (B, W, K), ``beta`` (B, W, K) and ``log Z`` (B,) of each row (conventions above).

    Args:
        emissions: (B, W, K) tag scores.
        mask: (B, W) real words; every row a prefix of at least one word, as pytorch-crf requires.
        start, end: (K,) start and end scores; transitions: (K, K), ``[i, j]`` = tag i then tag j.

    Beyond a row's last word, ``alpha`` repeats the last value and ``beta`` holds ``end``.
    """
    B, W, K = emissions.shape
    mask = mask.bool()
    alphas = [start + emissions[:, 0]]  # (B, K)
    for t in range(1, W):
        step = torch.logsumexp(alphas[-1].unsqueeze(2) + transitions, dim=1) + emissions[:, t]  # (B, K)
        alphas.append(torch.where(mask[:, t, None], step, alphas[-1]))
    betas = [end.expand(B, K)]
    for t in range(W - 2, -1, -1):
        step = torch.logsumexp(transitions + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)  # (B, K)
        betas.append(torch.where(mask[:, t + 1, None], step, end.expand(B, K)))  # t is a row's last word
    alpha = torch.stack(alphas, 1)  # (B, W, K)
    beta = torch.stack(betas[::-1], 1)  # (B, W, K)
    log_z = torch.logsumexp(alpha[:, -1] + end, dim=1)  # (B,): alpha's last column is the last real word's
    return alpha, beta, log_z


@dataclass
class CRFLattice:
    """One row's forward-backward tables, to score segments of its tag path.

    Attributes:
        emissions, alpha, beta: (n, K) for the row's n real words; transitions: (K, K); log_z: scalar.
    """

    emissions: torch.Tensor
    alpha: torch.Tensor
    beta: torch.Tensor
    transitions: torch.Tensor
    log_z: torch.Tensor

    def segment_log_prob(self, start: int, tags: list[int], not_next: int | None = None) -> float:
        """log P(y[start : start + len(tags)] == tags, and the next tag is not ``not_next``).

        ``not_next`` is ignored when the segment reaches the row's last word. For a span of type X
        over words [s, e): ``tags = [B-X, I-X, ...]`` and ``not_next = I-X``: exactly this span, not
        the start of a longer one.
        """
        n = self.emissions.size(0)
        stop = start + len(tags)
        if not tags or start < 0 or stop > n:
            raise ValueError(f"segment [{start}, {stop}) is not inside a row of {n} words")
        score = self.alpha[start, tags[0]]
        for t in range(start + 1, stop):
            score = score + self.transitions[tags[t - start - 1], tags[t - start]] + self.emissions[t, tags[t - start]]
        last = tags[-1]
        if stop == n or not_next is None:
            score = score + self.beta[stop - 1, last]
        else:  # sum over the next tag, all but not_next: transition, its emission, and what follows it
            after = self.transitions[last] + self.emissions[stop] + self.beta[stop]  # (K,)
            keep = torch.ones_like(after, dtype=torch.bool)
            keep[not_next] = False
            score = score + torch.logsumexp(after[keep], dim=0)
        return float(score - self.log_z)


def crf_lattices(emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                 transitions: torch.Tensor) -> list[CRFLattice]:
    """One ``CRFLattice`` per row of a batch. Shapes as ``forward_backward``.

    Computed on the CPU in float64: a few (K, K) sums per word, which a GPU would run as hundreds of
    tiny kernels (and Apple's MPS has no float64); span probabilities near 1 keep their digits.
    """
    emissions, start, end, transitions = (x.detach().to("cpu", torch.float64) for x in (emissions, start, end, transitions))
    mask = mask.cpu()
    alpha, beta, log_z = forward_backward(emissions, mask, start, end, transitions)
    return [CRFLattice(emissions[b, :n], alpha[b, :n], beta[b, :n], transitions, log_z[b])
            for b, n in enumerate(mask.sum(1).tolist())]
