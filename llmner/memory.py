"""Peak memory: of the run's device (CUDA's reserved peak on a GPU, else the peak resident set, RSS),
and of the host (RSS: the trunk cache and the CPU copies live there).

Reported in ``metrics.json`` (``memory/peak_mb`` for the run's device, ``memory/peak_rss_mb`` for the
host, each the largest over the processes of a multi-process run) and in benchmark tables; the
benchmark resets the peak before each of its runs, so each run reports its own. A run on the CPU of
a machine that has a GPU reports its RSS, not the GPU's (unused) counter. Reserved, not allocated:
the allocator's cache is memory the process holds and another process cannot have.

``return_freed_memory`` fixes glibc malloc's mmap threshold. By default glibc raises the threshold
each time a large block is freed (up to 32 MiB), so later activation tensors come from the heap,
and freed heap memory stays resident as fragments. On a SmolLM2 CRF step over CoNLL-2003's longest
batch that slack was 1.5 GB of a 5.8 GB peak (``experiments/memory_cpu.md``). With the threshold
fixed at 4 MiB, the large tensors of long batches are mappings of their own and go back to the
system when freed; smaller ones still come from the heap. (At glibc's initial 128 KiB every
activation would be a mapping: a step then cost 1.3x as much, for the page faults.)
"""

from __future__ import annotations

import ctypes
import os
import resource
from pathlib import Path

import torch

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 4 * 2**20  # blocks this large or larger are mapped, and unmapped when freed


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at 4 MiB (see the module docstring); ``True`` if it was set.

    A no-op where the C library is not glibc, when the user set ``MALLOC_MMAP_THRESHOLD_`` (their
    choice wins), or with ``LLMNER_MALLOC=default`` (glibc's adaptive threshold kept).
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None or os.environ.get("LLMNER_MALLOC") == "default":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def reset_peak_memory() -> None:
    """Start a new peak: CUDA's counter, and the process's peak RSS (Linux: ``/proc/self/clear_refs``)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS (Linux >= 4.0)
    except OSError:
        pass  # elsewhere the peak is since process start (getrusage)


def peak_rss_mb() -> float:
    """The process's peak resident set (host RAM) since the last reset, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def peak_memory_mb(device: str | torch.device | None = None) -> float:
    """Peak memory of the run's ``device``: CUDA's reserved peak there, the peak RSS on a CPU.

    ``None``: the current CUDA device if this process has used CUDA, else the RSS.
    """
    if device is None:
        device = torch.device("cuda") if torch.cuda.is_available() and torch.cuda.is_initialized() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved(device) / 2**20
    return peak_rss_mb()
