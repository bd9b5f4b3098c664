"""Helpers of the backbone package that any module may use: a leaf, it imports nothing from llmner.

- ``evaluating``: eval mode for a block, every submodule's own mode given back after it;
- ``cache_dir`` and ``atomic_save``: where llmner keeps what it builds or converts, written so
  that concurrent builders do not collide;
- ``hide_library_notices``: log records of libraries that a user of llmner can do nothing about.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextmanager
def evaluating(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode for the block, then give every submodule back its own mode.

    ``module.train(was_training)`` would not do: it sets one mode on every submodule, which
    would switch a frozen backbone's layers (kept in eval mode) to training, or an unfrozen
    one's dropout (kept in training mode) off.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, mode in modes:
            m.training = mode


def cache_dir() -> Path:
    """Where llmner keeps what it builds or converts (``$LLMNER_CACHE``, default ``~/.cache/llmner``)."""
    return Path(os.environ.get("LLMNER_CACHE", Path.home() / ".cache" / "llmner"))


def atomic_save(target: Path, save: Callable[[Path], None]) -> Path:
    """Run ``save(tmpdir)`` and move the result to ``target``; concurrent builders do not collide."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    save(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


# Log records (logger name -> message starts) that say nothing a user of llmner can act on.
# bitsandbytes, imported by peft whenever LoRA is set up, warns on CPUs with AVX512-BF16 that its
# optional Hub kernel package (``kernels``) is missing; the plain CPU path it falls back to is the
# one llmner uses (4-bit weights are a GPU feature here).
NOTICES = {
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    # kernels (bitsandbytes' kernel hub client) when HF_HUB_OFFLINE=1: nothing is fetched anyway
    "kernels._internals.hf_hub": ("Skipping publisher trust check",),
}


def hide_library_notices() -> None:
    """Drop the log records in ``NOTICES`` (unless ``LLMNER_VERBOSE=1``); idempotent.

    A filter on the library's own logger, so it holds before the library is imported and
    whatever handlers the entry point configures.
    """
    if os.environ.get("LLMNER_VERBOSE") == "1":
        return
    for name, prefixes in NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(prefixes))
