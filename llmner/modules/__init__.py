"""The LightningModules: ``base`` (what they share), ``tagger`` (linear and CRF heads), ``generative`` (JSON answers)."""

from llmner.modules.base import LlmnerModule
from llmner.modules.generative import GenerativeModule
from llmner.modules.tagger import TaggerModule

__all__ = ["GenerativeModule", "LlmnerModule", "TaggerModule"]
