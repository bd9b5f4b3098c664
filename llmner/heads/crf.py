"""A linear-chain CRF over the linear head's emissions, with IOB2 constraints.

The CRF itself is pytorch-crf's (forward algorithm for the log-likelihood, Viterbi for decoding).
What it lacks is constraints: IOB2 forbids ``O -> I-X``, ``B-X -> I-Y`` and starting on ``I-X``.
``ConstrainedCRF`` serves pytorch-crf masked transition scores, so that forbidden paths score
``-10000`` in the likelihood and are never decoded, whatever the emissions.
"""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF

from llmner.data.schema import is_allowed_transition
from llmner.heads.linear import LinearHead

FORBIDDEN = -10000.0


class ConstrainedCRF(CRF):
    """pytorch-crf's ``CRF`` (batch first) whose forbidden IOB2 transitions can never be taken.

    pytorch-crf reads ``self.transitions`` and ``self.start_transitions`` in every computation;
    the properties below hand it the trained parameters with forbidden entries overwritten.
    The parameters keep their names, so state dicts are those of a plain ``CRF``.

    Args:
        tags: the tag list (index = tag id), IOB2.
    """

    def __init__(self, tags: list[str]) -> None:
        super().__init__(len(tags), batch_first=True)
        allowed = torch.tensor([[is_allowed_transition(a, b) for b in tags] for a in tags])  # (K, K)
        start_allowed = torch.tensor([is_allowed_transition(None, b) for b in tags])  # (K,)
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("start_allowed", start_allowed, persistent=False)

    def _masked(self, name: str, allowed: str) -> torch.Tensor:
        param = self._parameters.get(name)
        if param is None or allowed not in self._buffers:
            # During CRF.__init__: let nn.Module register the parameter (it checks hasattr first).
            if param is None:
                raise AttributeError(name)
            return param
        return param.masked_fill(~self._buffers[allowed], FORBIDDEN)

    @property
    def transitions(self) -> torch.Tensor:  # (K, K): score of tag i followed by tag j
        return self._masked("transitions", "allowed")

    @property
    def start_transitions(self) -> torch.Tensor:  # (K,)
        return self._masked("start_transitions", "start_allowed")

    def reset_parameters(self) -> None:
        # The parent initialises through the properties, which would fill copies; use the parameters.
        for name in ("start_transitions", "end_transitions", "transitions"):
            nn.init.uniform_(self._parameters[name], -0.1, 0.1)


class CRFHead(LinearHead):
    """Linear emissions (B, W, K) scored and decoded by a constrained CRF.

    Args:
        hidden_size: H, the backbone's hidden size.
        tags: the tag list (index = tag id), IOB2.
        dropout: dropout on the features.
    """

    def __init__(self, hidden_size: int, tags: list[str], dropout: float = 0.1) -> None:
        super().__init__(hidden_size, tags, dropout)
        self.crf = ConstrainedCRF(self.tags)

    def nll(self, emissions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per word (mean over real words). emissions (B, W, K), labels/mask (B, W)."""
        return -self.crf(emissions, labels, mask=mask, reduction="token_mean")

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi tag ids, one list per row, unpadded."""
        return self.crf.decode(emissions, mask=mask)
