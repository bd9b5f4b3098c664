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

    The properties can also be set and deleted, as ``nn.Module`` attributes can: FSDP
    (``use_orig_params``) replaces each parameter by a view of its flat parameter with
    ``delattr``/``setattr``, a plain tensor during forward, which a read-only property refused.
    Under FSDP a unit's parameters are whole only inside its forward, so decoding goes through
    ``forward`` too (``tags=None``): ``CRFHead.decode`` never reads a shard.

    Args:
        tags: the tag list (index = tag id), IOB2.
    """

    def __init__(self, tags: list[str]) -> None:
        super().__init__(len(tags), batch_first=True)
        allowed = torch.tensor([[is_allowed_transition(a, b) for b in tags] for a in tags])  # (K, K)
        start_allowed = torch.tensor([is_allowed_transition(None, b) for b in tags])  # (K,)
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("start_allowed", start_allowed, persistent=False)

    def _raw(self, name: str) -> torch.Tensor:
        """The parameter ``name``, or the plain tensor a strategy put in its place (FSDP's views)."""
        value = self.__dict__.get(name)  # first, as for any nn.Module attribute: FSDP's view during forward
        if value is None:
            value = self._parameters.get(name)
        if value is None:  # during CRF.__init__: nn.Module checks hasattr before registering the parameter
            raise AttributeError(name)
        return value

    def _masked(self, name: str, allowed: str) -> torch.Tensor:
        value = self._raw(name)
        keep = self._buffers.get(allowed)
        if keep is None or value.shape != keep.shape or value.untyped_storage().nbytes() == 0:
            return value  # during __init__, or FSDP's flat shard / freed view of it: no score table to mask
        return value.masked_fill(~keep, FORBIDDEN)

    def _set(self, name: str, value: torch.Tensor) -> None:
        """Reached only for a plain tensor (``nn.Module.__setattr__`` registers a ``Parameter`` itself and
        drops the instance attribute of that name, as it would for any module)."""
        self.__dict__[name] = value

    def _delete(self, name: str) -> None:
        self.__dict__.pop(name, None)

    transitions = property(  # (K, K): score of tag i followed by tag j
        lambda self: self._masked("transitions", "allowed"),
        lambda self, value: self._set("transitions", value),
        lambda self: self._delete("transitions"))
    start_transitions = property(  # (K,)
        lambda self: self._masked("start_transitions", "start_allowed"),
        lambda self, value: self._set("start_transitions", value),
        lambda self: self._delete("start_transitions"))

    def reset_parameters(self) -> None:
        # The parent initialises through the properties, which would fill copies; use the parameters.
        for name in ("start_transitions", "end_transitions", "transitions"):
            nn.init.uniform_(self._parameters[name], -0.1, 0.1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                reduction: str = "sum") -> torch.Tensor | list[list[int]]:
        """Log-likelihood of ``tags`` (pytorch-crf's forward), or with ``tags=None`` the Viterbi tag ids."""
        if tags is None:
            return self.decode(emissions, mask=mask)
        return super().forward(emissions, tags, mask=mask, reduction=reduction)


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
        """Viterbi tag ids, one list per row, unpadded (through the CRF's forward: see ``ConstrainedCRF``)."""
        return self.crf(emissions, mask=mask)
