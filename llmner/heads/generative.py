"""Decoding for the generative head: JSON answers that always parse and always fit the schema.

Why by hand (house rule 8): lm-format-enforcer enforces a JSON schema, but neither it nor
transformers' own processors can (a) guarantee that the answer is *closed* before
``max_new_tokens`` runs out (a model that never stops a string leaves truncated JSON), or
(b) restrict values to text that occurs in the report. Both matter here, so this module holds a
small character-level grammar and a token trie (~200 lines, tested in ``tests/test_decoding.py``).

The grammar accepts exactly the ``json.dumps`` layout the model is trained on::

    {"PER": ["John Smith", "Mary"], "ORG": [], "Victim_Age": [47]}

- keys in schema order, all present, each once (the model cannot skip, add or misspell one);
- list values; a string value is a non-empty substring of the source text (JSON-escaped: a
  newline in the text is written ``\\n``, a quote ``\\"``; ``\\uXXXX`` escapes are not used);
- an integer value (``integer_keys``, e.g. ``Victim_Age``) is a run of digits that occurs in the
  text, without leading zeros;
- no value twice in one list: a value already in the list cannot be closed again, a prefix is
  allowed only while some new value can still grow from it (no dead ends), and ``,`` only while a
  new value exists at all, so a model that prefers to repeat itself (``[30, 35, 30, 35, ...]``,
  a known failure of JSON decoding) must end the list instead.

Budget: every state has a *closure*, the shortest string that completes the JSON from it, and a
bound on the tokens it takes (the fewest tokens that spell each key's segment, summed). A token
is allowed only if the bound after it still fits in the tokens left; when none does, the decoder
follows the closure itself, relaxing the substring rule for that tail only (``""`` or ``0`` may
appear there; the parser drops empty strings). So the output is complete, valid JSON within
``max_new_tokens`` whatever the logits say.

Everything here is plain Python and torch; the tokenizer is used through ``batch_decode`` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import torch

_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
_DIGITS = "0123456789"

# States are small tuples (hashable, so allowed-token tables are cached per state); ``seen`` is the
# frozenset of the values already in the current list (decoded strings, or digit strings):
#   ("F", i, j)               inside the forced literal that opens key i, at character j
#   ("V", i, first, seen)     expecting a value of key i (or "]" if first)
#   ("S", i, v, esc, seen)    inside a string value v of key i; esc: a backslash is pending
#   ("I", i, d, seen)         inside an integer with digits d
#   ("A", i, seen)            after a string value: "," or "]"
#   ("C", i, seen)            after ",": " "
#   ("E",)                    after the last list: "}"
#   ("D",)                    done
State = tuple
_NONE: frozenset = frozenset()


class AnswerGrammar:
    """Character-level acceptor of one JSON answer over ``keys`` for the source ``text``.

    Args:
        keys: the schema's keys, in the order they must appear.
        integer_keys: keys whose values are integers.
        text: the source text; string values must be substrings of it.
        cost: tokens needed to spell a string (``TokenTrie.cost``), for the budget.
        no_repeat: forbid a value already in the same list (see the module docstring).
    """

    def __init__(self, keys: list[str], integer_keys: set[str] | frozenset[str], text: str,
                 cost: Callable[[str], int] = len, no_repeat: bool = True) -> None:
        self.keys = list(keys)
        self.no_repeat = no_repeat
        self.is_int = [k in integer_keys for k in self.keys]
        self.text = text
        self.cost = cost
        self.literals = [("{" if i == 0 else ", ") + json.dumps(k, ensure_ascii=False) + ": [" for i, k in enumerate(self.keys)]
        # rest[i]: what closes the answer after the "]" of key i; tail[i]: its cost, counted per key
        # segment so that following any segment's cheapest tokenization never raises the bound
        self.rest = ["".join(lit + "]" for lit in self.literals[i + 1 :]) + "}" for i in range(len(self.keys))]
        self.tail = [sum(cost(lit + "]") for lit in self.literals[i + 1 :]) + cost("}") for i in range(len(self.keys))]
        self.start: State = ("F", 0, 0) if self.keys else ("E",)
        self._closure_len: dict[State, int] = {}

    def _after_list(self, i: int) -> State:
        return ("F", i + 1, 0) if i + 1 < len(self.keys) else ("E",)

    def _fresh_suffix(self, prefix: str, seen: frozenset, digits: bool) -> str | None:
        """The shortest text that makes ``prefix`` + it a value of the text not in ``seen`` ("" if
        ``prefix`` is new already), or ``None`` if no such value starts with ``prefix``.

        Extensions of one occurrence are distinct strings, so among ``len(seen) + 1`` of them one is
        new: the scan stops after a few characters whatever the text's length.
        """
        if not self.no_repeat or prefix not in seen:
            return ""
        if digits and prefix == "0":  # no leading zeros: "0" has no extension
            return None
        best = None
        start = self.text.find(prefix)
        while start != -1:
            for end in range(start + len(prefix) + 1, len(self.text) + 1):
                if digits and self.text[end - 1] not in _DIGITS:
                    break
                if best is not None and end - start - len(prefix) >= len(best):
                    break
                if self.text[start:end] not in seen:
                    best = self.text[start + len(prefix) : end]
                    break
            start = self.text.find(prefix, start + 1)
        return best

    def _growable(self, prefix: str, seen: frozenset, digits: bool) -> bool:
        """Whether some value not in ``seen`` starts with ``prefix`` (itself included) in the text."""
        return self._fresh_suffix(prefix, seen, digits) is not None

    def _new_value_exists(self, i: int, seen: frozenset) -> bool:
        """Whether any value not yet in the list of key ``i`` can be written (strict mode)."""
        if self.is_int[i]:
            return any(self._growable(d, seen, True) for d in set(self.text) & set(_DIGITS))
        if not self.text.strip():
            return False
        return len(seen) < len(self.text) or any(self._growable(c, seen, False) for c in set(self.text))

    def step(self, state: State, ch: str, strict: bool = True) -> State | None:
        """The state after character ``ch``, or ``None`` if the grammar rejects it.

        ``strict=False`` drops the source-text and no-repeat rules (used only to follow a closure).
        """
        kind = state[0]
        if kind == "F":
            _, i, j = state
            lit = self.literals[i]
            if ch != lit[j]:
                return None
            return ("V", i, True, _NONE) if j + 1 == len(lit) else ("F", i, j + 1)
        if kind == "V":
            _, i, first, seen = state
            if ch == "]" and first:
                return self._after_list(i)
            if self.is_int[i]:
                ok = ch in _DIGITS and (not strict or (ch in self.text and self._growable(ch, seen, True)))
                return ("I", i, ch, seen) if ok else None
            ok = ch == '"' and (not strict or self._new_value_exists(i, seen))
            return ("S", i, "", False, seen) if ok else None
        if kind == "S":
            _, i, value, esc, seen = state
            if esc:
                decoded = _ESCAPES.get(ch)
                if decoded is None:
                    return None
            elif ch == '"':
                if not strict:
                    return ("A", i, seen | {value})
                return ("A", i, seen | {value}) if value and (not self.no_repeat or value not in seen) else None
            elif ch == "\\":  # only if some escape can continue the value (no dead ends)
                ok = not strict or any(value + d in self.text and self._growable(value + d, seen, False)
                                       for d in _ESCAPES.values())
                return ("S", i, value, True, seen) if ok else None
            elif ord(ch) < 0x20:  # raw control characters are invalid inside JSON strings
                return None
            else:
                decoded = ch
            value += decoded
            ok = not strict or (value in self.text and self._growable(value, seen, False))
            return ("S", i, value, False, seen) if ok else None
        if kind == "I":
            _, i, digits, seen = state
            if ch in _DIGITS:
                if digits == "0":
                    return None
                digits += ch
                ok = not strict or (digits in self.text and self._growable(digits, seen, True))
                return ("I", i, digits, seen) if ok else None
            if strict and self.no_repeat and digits in seen:
                return None
            seen = seen | {digits}
            if ch == ",":
                return ("C", i, seen) if not strict or self._new_value_exists(i, seen) else None
            return self._after_list(i) if ch == "]" else None
        if kind == "A":
            _, i, seen = state
            if ch == ",":
                return ("C", i, seen) if not strict or self._new_value_exists(i, seen) else None
            return self._after_list(i) if ch == "]" else None
        if kind == "C":
            return ("V", state[1], False, state[2]) if ch == " " else None
        if kind == "E":
            return ("D",) if ch == "}" else None
        return None  # "D": nothing after the closing brace

    def _head(self, state: State) -> tuple[str, int | None]:
        """The closure of ``state`` up to the "]" of its key, and that key (``None`` after the lists)."""
        kind = state[0]
        if kind == "F":
            _, i, j = state
            return self.literals[i][j:] + "]", i
        if kind == "V":
            _, i, first, _ = state
            return ("" if first else ("0" if self.is_int[i] else '""')) + "]", i
        if kind == "S":
            _, i, value, esc, seen = state
            if esc:
                return '""]', i
            # a value already in the list is first grown into a new one, so that even a closure
            # forced by the budget repeats nothing
            grow = self._fresh_suffix(value, seen, False) or ""
            return json.dumps(grow, ensure_ascii=False)[1:-1] + '"]', i
        if kind == "I":
            _, i, digits, seen = state
            return (self._fresh_suffix(digits, seen, True) or "") + "]", i
        if kind == "A":
            return "]", state[1]
        if kind == "C":
            return " " + self._head(("V", state[1], False, state[2]))[0], state[1]
        return ("}" if kind == "E" else ""), None

    def closure(self, state: State) -> str:
        """The shortest string that completes a valid answer from ``state``."""
        head, i = self._head(state)
        return head + (self.rest[i] if i is not None else "")

    def closure_len(self, state: State) -> int:
        """An upper bound on the tokens that ``closure(state)`` takes (exact per key segment)."""
        n = self._closure_len.get(state)
        if n is None:
            head, i = self._head(state)
            n = self._closure_len[state] = self.cost(head) + (self.tail[i] if i is not None else 0)
        return n

    def feed(self, state: State, piece: str) -> State:
        """Advance over a whole token string (strictly if possible, else along the closure)."""
        s: State | None = state
        for ch in piece:
            s = self.step(s, ch) if s is not None else None
        if s is not None:
            return s
        s = state
        for ch in piece:
            s = self.step(s, ch, strict=False)
            if s is None:
                raise ValueError(f"token {piece!r} is not allowed after state {state}")
        return s


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


@dataclass
class _Row:
    grammar: AnswerGrammar
    state: State
    cache: dict


class JsonConstraint:
    """A logits processor (``(input_ids (B, T), scores (B, V)) -> scores``) for ``model.generate``.

    Masks every token the grammar of its row rejects, or whose closure would not fit in the
    tokens left; after the closing brace only ``eos_id`` is allowed.

    Args:
        trie: the tokenizer's ``TokenTrie``.
        grammars: one ``AnswerGrammar`` per row of the batch.
        prompt_len: T of the (left-padded) prompt; later positions are generated tokens.
        max_new_tokens: the generation budget.
        eos_id: the token that ends an assistant turn.
    """

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


def parse_answer(raw: str, keys: list[str], integer_keys: set[str] | frozenset[str] = frozenset()) -> tuple[dict[str, list] | None, bool]:
    """Read one generated answer.

    Returns:
        ``(answers, fits_schema)``: ``answers`` is the JSON object (``None`` if ``raw`` is not a
        JSON object); ``fits_schema`` is True when it has exactly ``keys``, each a list of strings
        (integers for ``integer_keys``). Empty strings and repeats are dropped from the values.
    """
    try:
        obj = json.loads(raw.strip())
    except (json.JSONDecodeError, ValueError):
        return None, False
    if not isinstance(obj, dict):
        return None, False
    fits = set(obj) == set(keys) and all(
        isinstance(v, list) and all(
            (isinstance(x, int) and not isinstance(x, bool)) if k in integer_keys else isinstance(x, str) for x in v
        )
        for k, v in obj.items()
    )
    out: dict[str, list] = {}
    for k, v in obj.items():
        values = v if isinstance(v, list) else [v]
        kept = [x for x in values if isinstance(x, (str, int)) and not isinstance(x, bool) and str(x).strip()]
        out[str(k)] = list(dict.fromkeys(kept))  # a value once (unconstrained output may repeat one)
    return out, fits


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
