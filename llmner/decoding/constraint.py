"""The JSON constraint as a ``transformers.LogitsProcessor`` for ``model.generate``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from llmner.decoding.grammar import AnswerGrammar, State
from llmner.decoding.trie import TokenTrie


@dataclass
class _Row:
    grammar: AnswerGrammar
    state: State
    cache: dict


class JsonConstraint(LogitsProcessor):
    """A logits processor (``(input_ids (B, T), scores (B, V)) -> scores``) for ``model.generate``.

    Masks every token the grammar of its row rejects, or whose closure would not fit in the
    tokens left; after the closing brace only ``eos_id`` is allowed. It keeps each row's grammar
    state from call to call (one ``generate`` call, its rows in a fixed order): hence no
    continuous batching, where rows come and go.

    Args:
        trie: the tokenizer's ``TokenTrie``.
        grammars: one ``AnswerGrammar`` per row of the batch.
        prompt_len: T of the (left-padded) prompt; later positions are generated tokens.
        max_new_tokens: the generation budget.
        eos_id: the token that ends an assistant turn.
    """

    supports_continuous_batching = False

    def __init__(self, trie: TokenTrie, grammars: list[AnswerGrammar], prompt_len: int, max_new_tokens: int, eos_id: int) -> None:
        self.trie, self.prompt_len, self.max_new_tokens, self.eos_id = trie, prompt_len, max_new_tokens, eos_id
        self.rows = [_Row(g, g.start, {}) for g in grammars]
        for g in grammars:
            need = g.closure_len(g.start)
            if need >= 10**9:
                raise ValueError(f"the tokenizer cannot spell the answer skeleton {g.closure(g.start)!r}")
            if need > max_new_tokens:
                raise ValueError(f"max_new_tokens={max_new_tokens} cannot hold the shortest answer ({need} tokens: "
                                 f"{g.closure(g.start)!r}); raise head.max_new_tokens")

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_len
        left = self.max_new_tokens - generated  # tokens still to come, this one included
        allowed = torch.zeros_like(scores, dtype=torch.bool)  # (B, V)
        for b, row in enumerate(self.rows):
            if generated > 0 and row.state != ("D",):
                row.state = row.grammar.feed(row.state, self.trie.strings[int(input_ids[b, -1])])
            if row.state == ("D",):
                allowed[b, self.eos_id] = True
                continue
            table = row.cache.get(row.state)
            if table is None:
                ids, lens = self.trie.allowed(row.grammar, row.state)
                table = row.cache[row.state] = (torch.tensor(ids, dtype=torch.long), torch.tensor(lens, dtype=torch.long))
            ids, lens = table
            ok = ids[lens <= left - 1]
            if len(ok) == 0:  # out of budget (or a dead end): follow the closure
                g = row.grammar
                ok = torch.tensor([t for t in self.trie.prefixes(g.closure(row.state))
                                   if g.closure_len(g.feed(row.state, self.trie.strings[t])) <= left - 1], dtype=torch.long)
            allowed[b, ok.to(allowed.device)] = True
        return scores.masked_fill(~allowed, float("-inf"))
