"""The backbone in parts (see ``model`` for the whole): ``Backbone`` is the class configs and checkpoints name.

Modules, each importing only those listed before it: ``util`` (a leaf: ``evaluating``, the cache
directory), ``testing`` (the tiny random model), ``sources`` (Hub, directory, GGUF), ``layers``
(layer surgery, the attention schedule), ``recompute`` (gradient checkpointing), ``trunk`` (the
frozen-trunk cache), ``model`` (``Backbone``).
"""

from llmner.backbone.model import Backbone
from llmner.backbone.sources import resolve_source
from llmner.backbone.testing import TINY_RANDOM
from llmner.backbone.util import evaluating

__all__ = ["TINY_RANDOM", "Backbone", "evaluating", "resolve_source"]
