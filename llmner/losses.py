"""The weighted compound loss of the tag heads: CE + CRF NLL + label-smoothed CE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CompoundLoss(nn.Module):
    """``ce_weight * CE + crf_weight * CRF_NLL + smoothing_weight * label-smoothed CE``.

    All three terms are means over real words (the CRF's NLL too, ``token_mean``), so the
    weights compare like with like. A head without a CRF drops the CRF term.

    Args:
        ce_weight: weight of the word-level cross-entropy.
        crf_weight: weight of the CRF negative log-likelihood.
        smoothing_weight: weight of the label-smoothed cross-entropy.
        label_smoothing: smoothing of that term (0.1: 10% of the mass spread over all tags).
    """

    def __init__(
        self,
        ce_weight: float = 0.5,
        crf_weight: float = 0.3,
        smoothing_weight: float = 0.2,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.ce_weight = ce_weight
        self.crf_weight = crf_weight
        self.smoothing_weight = smoothing_weight
        self.label_smoothing = label_smoothing

    def forward(
        self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, head: nn.Module
    ) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted sum (``"loss"``).

        Args:
            emissions: (B, W, K) tag scores of the words.
            labels: (B, W) gold tag ids; padding positions are ignored via ``mask``.
            mask: (B, W) True on real words.
            head: the tag head; its ``nll`` is used when it has a CRF.
        """
        logits, gold = emissions[mask], labels[mask]  # (N, K), (N,)
        terms = {}
        if self.ce_weight:
            terms["ce"] = F.cross_entropy(logits, gold)
        if self.smoothing_weight:
            terms["smoothed_ce"] = F.cross_entropy(logits, gold, label_smoothing=self.label_smoothing)
        if self.crf_weight and getattr(head, "crf", None) is not None:
            terms["crf_nll"] = head.nll(emissions, labels, mask)
        weights = {"ce": self.ce_weight, "smoothed_ce": self.smoothing_weight, "crf_nll": self.crf_weight}
        terms["loss"] = sum(weights[k] * v for k, v in terms.items())
        return terms
