"""User-facing errors: a mistake in data, config or checkpoint that a user can fix.

Entry points print such an error as one line (what, where, what was expected) and exit non-zero,
without a traceback (``HYDRA_FULL_ERROR=1`` shows it). Anything else is a bug and keeps its traceback.
"""


class LlmnerError(Exception):
    """Base of the errors that are the user's to fix."""


class ConfigError(LlmnerError, ValueError):
    """A config value that cannot work (names the key, the value and what is expected)."""


class CheckpointError(LlmnerError):
    """A checkpoint file that is missing, unreadable or not llmner's."""
