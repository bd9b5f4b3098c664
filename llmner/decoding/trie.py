"""The tokenizer's vocabulary as text: each token's string, and a character trie over them.

The grammar works on characters, the model on tokens; the trie walks both at once
(``TokenTrie.allowed``) and prices a string in tokens (``TokenTrie.cost``) for the budget. The
tokenizer is used through ``decode`` and ``batch_decode`` only.
"""

from __future__ import annotations

from llmner.decoding.grammar import AnswerGrammar, State


def token_strings(tokenizer) -> list[str]:
    """The text each token id adds when it follows other text ("" for special tokens).

    Decoded after an anchor token, so that SentencePiece's leading-space marker is kept, and
    without clean-up of spaces, so that the strings concatenate to what was generated.
    """
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"][-1]
    vocab = len(tokenizer)
    base = tokenizer.decode([anchor], clean_up_tokenization_spaces=False)
    pairs = tokenizer.batch_decode([[anchor, i] for i in range(vocab)], clean_up_tokenization_spaces=False)
    special = set(tokenizer.all_special_ids)
    out = []
    for i, s in enumerate(pairs):
        s = s[len(base) :] if s.startswith(base) else ""
        out.append("" if i in special or "\ufffd" in s else s)
    return out


class TokenTrie:
    """A character trie over the tokenizer's decoded vocabulary; node = {char: node, None: [ids]}."""

    def __init__(self, strings: list[str]) -> None:
        self.strings = strings
        self.root: dict = {}
        for tid, s in enumerate(strings):
            if not s:
                continue
            node = self.root
            for ch in s:
                node = node.setdefault(ch, {})
            node.setdefault(None, []).append(tid)
        self._cost: dict[str, int] = {}

    def allowed(self, grammar: AnswerGrammar, state: State) -> tuple[list[int], list[int]]:
        """Token ids the grammar accepts from ``state`` (strictly) and the closure length after each."""
        ids: list[int] = []
        lens: list[int] = []
        stack = [(self.root, state)]
        while stack:
            node, s = stack.pop()
            for ch, child in node.items():
                if ch is None:
                    continue
                nxt = grammar.step(s, ch)
                if nxt is None:
                    continue
                here = child.get(None)
                if here:
                    ids += here
                    lens += [grammar.closure_len(nxt)] * len(here)
                stack.append((child, nxt))
        return ids, lens

    def cost(self, text: str) -> int:
        """The fewest tokens that spell ``text`` (cached; a large number if no tokenization exists)."""
        cached = self._cost.get(text)
        if cached is not None:
            return cached
        n = len(text)
        best = [0] + [10**9] * n  # best[k]: tokens for text[n-k:]
        for i in range(n - 1, -1, -1):
            node, j = self.root, i
            while j < n:
                node = node.get(text[j])
                if node is None:
                    break
                j += 1
                if None in node:
                    best[n - i] = min(best[n - i], 1 + best[n - j])
        self._cost[text] = best[n]
        return best[n]

    def prefixes(self, text: str) -> list[int]:
        """Token ids whose string is a non-empty prefix of ``text``."""
        ids, node = [], self.root
        for ch in text:
            node = node.get(ch)
            if node is None:
                break
            ids += node.get(None, [])
        return ids
