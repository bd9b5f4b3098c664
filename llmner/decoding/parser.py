"""Reading one generated answer back into ``{key: [values]}``, and whether it fits the schema."""

from __future__ import annotations

import json


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
