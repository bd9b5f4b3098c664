"""llmner.memory: the allocator setting every entry point applies, and the peak it reports."""

import platform
import subprocess
import sys

import pytest

CHILD = """
import ctypes, torch
from llmner.memory import return_freed_memory
from pathlib import Path
def rss():
    return int([l for l in Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS:')][0].split()[1]) // 1024
print(return_freed_memory())
# glibc raises its mmap threshold when a large mapped block is freed; later blocks of that size then
# come from the heap, and a heap block freed below a live one stays resident
big = torch.ones(16 * 2**20 // 4); del big
blocks = [torch.ones(8 * 2**20 // 4) for _ in range(30)]   # 240 MB
keep = torch.ones(2**20 // 4)                              # a live block above them on the heap
before = rss(); del blocks
print(before - rss())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_tensors_go_back_to_the_system_unless_the_user_chose_otherwise():
    def child(env):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"} | env)
        assert out.returncode == 0, out.stderr
        flag, freed = out.stdout.split()
        return flag == "True", int(freed)

    fixed, freed = child({})
    assert fixed and freed > 200  # MB returned at once
    kept, freed_default = child({"LLMNER_MALLOC": "default"})
    assert not kept and freed_default < 100  # glibc's adaptive threshold keeps them resident
