"""The generative model's decoding settings (``head=generative``) and its per-tokenizer tables."""

from __future__ import annotations

from llmner.decoding.constraint import JsonConstraint
from llmner.decoding.grammar import AnswerGrammar
from llmner.decoding.trie import TokenTrie, token_strings


class JsonDecoder:
    """The generative head's decoding settings and its per-tokenizer tables (plain Python).

    Args:
        tokenizer: the backbone's tokenizer.
        tags: the model's IOB2 tag set (its entity types are the schema's keys by default).
        constrained: decode through ``JsonConstraint`` (``False``: plain greedy, may not parse).
        max_new_tokens: tokens per answer; the constraint closes the JSON within it.
        check_unconstrained: at test time, also decode without the constraint and report how
            often that output parses (``test/unconstrained_parse_rate``); doubles test time.
        no_repeat: the constraint forbids a value already in the same list, so a list ends
            instead of looping (``False``: as llmner 0.2 and earlier decoded).
    """

    def __init__(self, tokenizer, tags: list[str], constrained: bool = True, max_new_tokens: int = 256,
                 check_unconstrained: bool = True, no_repeat: bool = True) -> None:
        self.no_repeat = no_repeat
        self.tokenizer = tokenizer
        self.tags = list(tags)
        self.constrained = constrained
        self.max_new_tokens = max_new_tokens
        self.check_unconstrained = check_unconstrained
        self._trie: TokenTrie | None = None

    @property
    def trie(self) -> TokenTrie:
        if self._trie is None:  # ~1 s for a 50k vocabulary; built on first use
            self._trie = TokenTrie(token_strings(self.tokenizer))
        return self._trie

    def text_of(self, ids: list[int], eos_id: int) -> str:
        """The generated text: the token strings up to ``eos_id``, as the grammar saw them."""
        out = []
        for i in ids:
            if i == eos_id:
                break
            out.append(self.trie.strings[i])
        return "".join(out)

    def processor(self, keys: list[str], integer_keys: set[str], texts: list[str], prompt_len: int, eos_id: int) -> JsonConstraint:
        grammars = [AnswerGrammar(keys, integer_keys, t, cost=self.trie.cost, no_repeat=self.no_repeat) for t in texts]
        return JsonConstraint(self.trie, grammars, prompt_len, self.max_new_tokens, eos_id)
