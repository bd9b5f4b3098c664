"""Seeded splits of one collection into train/validation/test (a leaf: every corpus may use it)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TypeVar

from llmner.data.schema import DataError

SPLITS = ("train", "validation", "test")
T = TypeVar("T")


def split_by_fractions(items: Sequence[T], fractions: Mapping[str, float], seed: int = 0) -> dict[str, list[T]]:
    """A seeded shuffle of ``items`` cut by ``fractions`` (e.g. ``{"train": 0.8, "test": 0.2}``).

    Cuts are rounded on the cumulative fraction, so fractions summing to 1 use every item.
    """
    unknown = set(fractions) - set(SPLITS)
    if unknown or any(f < 0 for f in fractions.values()) or sum(fractions.values()) > 1 + 1e-9:
        raise DataError(f"split fractions {dict(fractions)}: expected names among {SPLITS}, "
                        "non-negative fractions summing to at most 1")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    out: dict[str, list[T]] = {}
    done, total = 0, 0.0
    for split in SPLITS:  # fixed order, whatever the mapping's order
        if split in fractions:
            total += fractions[split]
            cut = min(len(items), round(total * len(items)))
            out[split] = [items[i] for i in sorted(order[done:cut])]
            done = cut
    return out
