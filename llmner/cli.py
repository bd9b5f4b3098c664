"""What every entry point does around its work: user-facing errors as one line, no traceback.

A mistake the user can fix (``llmner.errors.LlmnerError``: bad data, config value or checkpoint;
also a constructor's ``ValueError`` raised while Hydra instantiates a config node) is printed as
``llmner <command>: <what, where, what was expected>`` and the process exits with status 2.
``HYDRA_FULL_ERROR=1`` re-raises it with its traceback. Any other exception is a bug and keeps
its traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf.errors import MissingMandatoryValue

from llmner.errors import ConfigError, LlmnerError
from llmner.memory import return_freed_memory

log = logging.getLogger(__name__)


# What to do about a Lightning refusal that names no llmner setting.
HINTS = {
    "No supported gpu backend": "trainer=ddp, fsdp and deepspeed_* need GPUs; trainer=ddp_sim runs on CPUs",
    "requires a GPU accelerator": "trainer=ddp, fsdp and deepspeed_* need GPUs; trainer=ddp_sim runs on CPUs",
    "must have DeepSpeed installed": "pip install 'llmner[deepspeed]' installs the versions Lightning supports",
}


def user_error(err: BaseException) -> str | None:
    """The one-line message of a user-facing error, or ``None`` for anything else (a bug)."""
    key = None
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        found = [line for line in str(err).splitlines() if line.startswith("full_key:")]
        key = key or (found[0].split(":", 1)[1].strip() if found else None)
        err = err.__cause__
    if isinstance(err, LlmnerError):
        return str(err)
    if isinstance(err, MissingMandatoryValue):  # a `???` value of the config that the command line did not set
        name = getattr(err, "full_key", None) or "value"
        return f"config {name}: required, give it on the command line ({name}=...)"
    if key is not None and isinstance(err, (ValueError, TypeError, MisconfigurationException)):  # a constructor refused a config value
        hint = next((f" ({h})" for k, h in HINTS.items() if k in str(err)), "")
        return f"config {key}: {err}{hint}"
    return None


# Notices of the libraries that a user of llmner can do nothing about (deprecations inside
# transformers, peft and Lightning; frozen modules kept in eval mode on purpose). LLMNER_VERBOSE=1 shows them.
QUIET = [
    dict(category=FutureWarning, module=r"(transformers|peft|lightning)\."),
    dict(category=DeprecationWarning, module=r"(transformers|peft|lightning|torch)\."),
    dict(message=r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    dict(message=r"Found \d+ module\(s\) in eval mode"),
    dict(message=r".*does not have many workers"),
    # Several processes: the epoch-end metrics are computed from every process's records and are the
    # same on all of them, and the sampler's repeated items are de-duplicated (llmner.modules.base).
    dict(message=r"It is recommended to use `self\.log\('(val|test)/"),
    dict(message=r"Using `DistributedSampler` with the dataloaders"),
]


def quiet_libraries() -> None:
    """Hide the library notices in ``QUIET`` (unless ``LLMNER_VERBOSE=1``)."""
    if os.environ.get("LLMNER_VERBOSE") == "1":
        return
    for rule in QUIET:
        warnings.filterwarnings("ignore", **rule)


def input_file(key: str, value: str | os.PathLike, expected: str) -> Path:
    """``value`` as a path, checked to be a readable file before any work starts.

    Raises:
        ConfigError: ``key=value: <what is wrong> (expected <expected>)``.
    """
    path = Path(value)
    problem = ("no such file" if not path.exists() else "is a directory" if path.is_dir()
               else "cannot be read" if not os.access(path, os.R_OK) else None)
    if problem:
        raise ConfigError(f"{key}={value}: {problem} (expected {expected})")
    return path


def output_dir(key: str, value: str | os.PathLike) -> Path:
    """``value`` as a directory path that can be created or written into (nothing is created here).

    Raises:
        ConfigError: ``key=value`` is a file, or lies under a file or a directory that is not writable.
    """
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={value}: is a file (expected a directory to write into; it is created if missing)")
    nearest = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={value}: cannot be created or written ({nearest} is not a writable directory)")
    return path


def output_file(key: str, value: str | os.PathLike, expected: str) -> Path:
    """``value`` as a file path that can be written (an existing file is replaced; nothing is written here).

    Raises:
        ConfigError: ``key=value`` is a directory, or its directory is missing or not writable.
    """
    path = Path(value)
    parent = path.absolute().parent
    problem = ("is a directory" if path.is_dir() else f"no such directory {parent}" if not parent.is_dir()
               else "cannot be written" if not os.access(path if path.exists() else parent, os.W_OK) else None)
    if problem:
        raise ConfigError(f"{key}={value}: {problem} (expected {expected})")
    return path


def run(command: str, work: Callable[[], Any]) -> Any:
    """``work()``, with user-facing errors turned into one line on stderr and exit status 2."""
    quiet_libraries()
    return_freed_memory()
    try:
        return work()
    except Exception as err:  # noqa: BLE001 - sorted into user errors and bugs below
        message = user_error(err)
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("%s", message)
        print(f"llmner {command}: {message}", file=sys.stderr)
        sys.exit(2)
