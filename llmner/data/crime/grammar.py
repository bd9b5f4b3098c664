"""A small composable grammar for report text: rules of alternatives, slots, entity pieces.

A rule maps a symbol to alternatives; an alternative is a template whose ``<name>`` refers to
another rule, ``<name?>`` to a rule used half of the time, and ``{slot}`` to a value given at
expansion: a plain string, an ``(text, label)`` entity or a list of such pieces. An alternative
that needs a slot the report lacks (``None`` or empty) is not used, so one grammar writes reports
with and without, say, a time. Expansions are pieces, as the generator's ``_assemble`` takes them,
which keeps entity spans exact by construction.

Written by hand because the grammar libraries on PyPI (nltk's CFG generation, tracery ports) expand
strings, not labelled spans, and do not skip alternatives by the data at hand.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence

Piece = str | tuple[str, str]  # plain text, or (text, entity label)
SlotValue = Piece | list[Piece] | None

_TOKEN = re.compile(r"<(\w+)(\?)?>|\{(\w+)\}")


class GrammarError(ValueError):
    """No alternative of a rule can be written with the slots given."""


class Grammar:
    """Rules ``symbol -> alternatives``; ``extend`` adds or replaces rules for one style."""

    def __init__(self, rules: Mapping[str, Sequence[str]]) -> None:
        self.rules = {k: tuple(v) for k, v in rules.items()}
        for symbol, alternatives in self.rules.items():
            if not alternatives:
                raise GrammarError(f"rule <{symbol}> has no alternative")
            for alt in alternatives:
                for m in _TOKEN.finditer(alt):
                    if m.group(1) and m.group(1) not in self.rules:
                        raise GrammarError(f"rule <{symbol}> refers to unknown rule <{m.group(1)}>")

    def extend(self, rules: Mapping[str, Sequence[str]]) -> Grammar:
        """A grammar with these rules added (or replacing same-named ones)."""
        return Grammar({**self.rules, **rules})

    def expand(self, rng: random.Random, symbol: str, slots: Mapping[str, SlotValue]) -> list[Piece]:
        """Pieces for ``symbol``: a random alternative among those the slots allow.

        Raises:
            GrammarError: no alternative of ``symbol`` (recursively) fits the slots.
        """
        out = self._expand(rng, symbol, slots, 0)
        if out is None:
            raise GrammarError(f"no alternative of <{symbol}> fits the slots {sorted(k for k, v in slots.items() if v)}")
        return out

    def _expand(self, rng: random.Random, symbol: str, slots: Mapping[str, SlotValue], depth: int) -> list[Piece] | None:
        if depth > 20:
            raise GrammarError(f"rule <{symbol}> recurses too deeply")
        alternatives = list(self.rules[symbol])
        rng.shuffle(alternatives)  # try a random alternative first, the others if it needs a missing slot
        for alt in alternatives:
            out = self._template(rng, alt, slots, depth)
            if out is not None:
                return out
        return None

    def _template(self, rng: random.Random, template: str, slots: Mapping[str, SlotValue], depth: int) -> list[Piece] | None:
        out: list[Piece] = []
        pos = 0
        for m in _TOKEN.finditer(template):
            if m.start() > pos:
                out.append(template[pos:m.start()])
            pos = m.end()
            rule, optional, slot = m.groups()
            if slot:
                value = slots.get(slot)
                if value is None or value == [] or value == "":
                    return None
                out.extend(value if isinstance(value, list) else [value])
            elif optional and rng.random() < 0.5:
                continue
            else:
                sub = self._expand(rng, rule, slots, depth + 1)
                if sub is None:
                    if optional:
                        continue
                    return None
                out.extend(sub)
        if pos < len(template):
            out.append(template[pos:])
        return out


def cap(pieces: list[Piece]) -> list[Piece]:
    """Upper-case the first character of the first non-empty piece (entity text included)."""
    for i, piece in enumerate(pieces):
        text = piece[0] if isinstance(piece, tuple) else piece
        if text:
            new = text[:1].upper() + text[1:]
            return [*pieces[:i], (new, piece[1]) if isinstance(piece, tuple) else new, *pieces[i + 1:]]
    return pieces


def text_of(pieces: list[Piece]) -> str:
    """The text the pieces write."""
    return "".join(p[0] if isinstance(p, tuple) else p for p in pieces)
