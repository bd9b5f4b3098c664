"""The JSON answer grammar: a character-level acceptor with a closure and a token budget.

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
bound on the tokens it takes (the fewest tokens that spell each key's segment, summed). The
constraint (``llmner.decoding.constraint``) allows a token only if the bound after it still fits
in the tokens left; when none does, it follows the closure itself, relaxing the substring rule
for that tail only (``""`` or ``0`` may appear there; the parser drops empty strings).

Plain Python: no tokenizer and no tensors here.
"""

from __future__ import annotations

import json
from collections.abc import Callable

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
