"""Peak memory of this process: CUDA's allocator peak on a GPU, else the peak resident set (RSS).

Reported in ``metrics.json`` (``memory/peak_mb``) and in benchmark tables; the benchmark resets the
peak before each of its runs, so each run reports its own.
"""

from __future__ import annotations

import resource
from pathlib import Path

import torch


def reset_peak_memory() -> None:
    """Start a new peak: CUDA's counter, and the process's peak RSS (Linux: ``/proc/self/clear_refs``)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS (Linux >= 4.0)
    except OSError:
        pass  # elsewhere the peak is since process start (getrusage)


def peak_memory_mb() -> float:
    """Peak CUDA memory allocated on GPU; otherwise the process's peak RSS since the last reset."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
