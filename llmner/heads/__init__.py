"""Tag heads: plain torch modules from word features (B, W, H) to tags. No Lightning here.

The generative model decodes with ``llmner.decoding`` (a grammar and a logits processor, not a head)."""

from llmner.heads.crf import ConstrainedCRF, CRFHead
from llmner.heads.linear import LinearHead

__all__ = ["ConstrainedCRF", "CRFHead", "LinearHead"]
