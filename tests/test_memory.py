"""llmner.memory: the allocator setting every entry point applies.

The oracle is glibc's own count of mapped blocks (``mallinfo2().hblks``), not the process's RSS: a
block that is a mapping of its own goes back to the system when freed, a heap block may not. That
count depends on the allocator's threshold only, not on what else the machine is doing.
"""

import ctypes
import os
import platform
import subprocess
import sys

import pytest

CHILD = """
import ctypes, torch
from llmner.memory import return_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
print(return_freed_memory())
# glibc raises its mmap threshold when a large mapped block is freed (here to 16 MiB); with the
# adaptive threshold the 8 MiB blocks after it then come from the heap, with llmner's they are mapped
big = torch.ones(16 * 2**20 // 4); del big
before = libc.mallinfo2().hblks
blocks = [torch.ones(8 * 2**20 // 4) for _ in range(30)]
print(libc.mallinfo2().hblks - before)
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")  # glibc >= 2.33
    except OSError:
        return False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or not _has_mallinfo2(),
                    reason="glibc >= 2.33 only")
@pytest.mark.parametrize("env, applied, mapped", [
    ({}, True, 30),                                      # llmner's fixed 4 MiB threshold: every 8 MiB block is mapped
    ({"LLMNER_MALLOC": "default"}, False, 0),            # glibc's adaptive threshold: all from the heap
    ({"MALLOC_MMAP_THRESHOLD_": str(2**20)}, False, 30),  # the user's own threshold wins, and applies
])
def test_large_tensors_are_mappings_of_their_own_unless_the_user_chose_otherwise(env, applied, mapped):
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
                         | env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    flag, count = out.stdout.split()
    assert (flag == "True") is applied
    assert int(count) == mapped
