"""Dropout + linear layer from word features to tag scores; predictions by argmax."""

from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """Word features (B, W, H) -> emissions (B, W, K), K = len(tags).

    Args:
        hidden_size: H, the backbone's hidden size.
        tags: the tag list (index = tag id).
        dropout: dropout on the features.
    """

    def __init__(self, hidden_size: int, tags: list[str], dropout: float = 0.1) -> None:
        super().__init__()
        self.tags = list(tags)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, len(tags))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, W, H) -> (B, W, K) emissions, in float32 whatever the backbone's dtype."""
        return self.proj(self.dropout(features.to(self.proj.weight.dtype))).float()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Best tag id per word, one list per row, unpadded. emissions (B, W, K), mask (B, W)."""
        best = emissions.argmax(-1)  # (B, W)
        return [row[m].tolist() for row, m in zip(best, mask)]
