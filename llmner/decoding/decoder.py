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
        merge_adapters: decode with each LoRA adapter merged into its base weight (one product a
            layer instead of three; the weights are restored exactly afterwards,
            ``llmner.backbone.inference``). ``False``: through the adapters, as llmner 0.3 decoded.
        dtype: decode with the weights cast to this dtype (``bfloat16``: much faster on CPUs with
            AMX/AVX512-BF16; changes the arithmetic, so answers may differ); ``None``: as trained.
    """

    DTYPES = ("float32", "bfloat16", "float16")

    def __init__(self, tokenizer, tags: list[str], constrained: bool = True, max_new_tokens: int = 256,
                 check_unconstrained: bool = True, no_repeat: bool = True, merge_adapters: bool = True,
                 dtype: str | None = None) -> None:
        if dtype is not None and dtype not in self.DTYPES:
            raise ValueError(f"head.dtype must be null or one of {self.DTYPES}, got {dtype!r}")
        self.merge_adapters = merge_adapters
        self.dtype = dtype
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
