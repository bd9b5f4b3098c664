"""The test-selection guard: model selection and sweeps use validation metrics, never test."""

from __future__ import annotations

from collections.abc import Mapping

from llmner.errors import ConfigError


class SelectionError(ConfigError):
    """A config asks to select models (or rank a sweep) on the test set."""


def check_selection(cfg: Mapping, where: str) -> None:
    """Refuse model selection on test: ``optimized_metric`` and every callback ``monitor`` must not be ``test/...``.

    Raises:
        SelectionError: naming the key, its value and what is expected.
    """
    keys = {"optimized_metric": cfg.get("optimized_metric")}
    for name, cb in (cfg.get("callbacks") or {}).items():
        if cb is not None and "monitor" in cb:
            keys[f"callbacks.{name}.monitor"] = cb["monitor"]
    for key, value in keys.items():
        if value is not None and str(value).startswith("test/"):
            raise SelectionError(
                f"{where}: {key}={value} selects on the test set; model selection and sweeps must use "
                f"validation metrics (e.g. val/f1). The test set is scored once, after selection."
            )
