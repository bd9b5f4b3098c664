"""Decoding for the generative model: JSON answers that always parse and always fit the schema.

Why by hand (house rule 8): lm-format-enforcer enforces a JSON schema, but neither it nor
transformers' own processors can (a) guarantee that the answer is *closed* before
``max_new_tokens`` runs out (a model that never stops a string leaves truncated JSON), or
(b) restrict values to text that occurs in the report. Both matter here, so this package holds a
small character-level grammar and a token trie (tested in ``tests/test_decoding.py``); the
constraint plugs into ``generate`` as a ``transformers.LogitsProcessor``.

Modules, each importing only those before it: ``grammar`` (``AnswerGrammar``: what may be
written, its closure and token budget), ``trie`` (``TokenTrie``: the vocabulary as text),
``constraint`` (``JsonConstraint``, the logits processor), ``parser`` (``parse_answer``) and
``decoder`` (``JsonDecoder``: the settings that ``head=generative`` builds).
"""

from llmner.decoding.constraint import JsonConstraint
from llmner.decoding.decoder import JsonDecoder
from llmner.decoding.grammar import AnswerGrammar
from llmner.decoding.parser import parse_answer
from llmner.decoding.trie import TokenTrie, token_strings

__all__ = ["AnswerGrammar", "JsonConstraint", "JsonDecoder", "TokenTrie", "parse_answer", "token_strings"]
