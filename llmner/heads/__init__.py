"""Tag heads: plain torch modules from word features (B, W, H) to tags. No Lightning here."""

from llmner.heads.crf import ConstrainedCRF, CRFHead
from llmner.heads.linear import LinearHead

__all__ = ["ConstrainedCRF", "CRFHead", "LinearHead"]
