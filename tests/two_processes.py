"""Checks run on 2 gloo processes by tests/test_gpu_paths.py, all in one spawn (starting processes is the slow part)."""

from __future__ import annotations

import os
import socket
import traceback

import torch
import torch.multiprocessing as mp

from llmner.heads import CRFHead

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_two_processes(fn, *args) -> list:
    """``fn(rank, *args)`` on 2 gloo processes; each rank's return value, in rank order."""
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_worker, args=(fn, rank, port, queue, args)) for rank in range(2)]
    for p in procs:
        p.start()
    try:
        results = dict(queue.get(timeout=180) for _ in procs)  # queue.Empty: a rank hung or died
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    errors = [r for r in results.values() if isinstance(r, str) and r.startswith("Traceback")]
    assert not errors, errors[0]
    return [results[r] for r in range(2)]


def _worker(fn, rank: int, port: int, queue, args) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        queue.put((rank, fn(rank, *args)))
    except BaseException:  # noqa: BLE001 - sent back to the test
        queue.put((rank, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


class _HeadStep(torch.nn.Module):
    """What a tagger step asks of the head: emissions, the CRF's NLL and its Viterbi decoding."""

    def __init__(self, head: CRFHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x, labels, mask):
        emissions = self.head(x)
        return self.head.nll(emissions, labels, mask), self.head.decode(emissions, mask)


def crf_under_fsdp(rank: int):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    from llmner.distributed import lora_wrap_policy

    torch.manual_seed(0)
    step = _HeadStep(CRFHead(8, TAGS, dropout=0.0)).eval()
    x, labels = torch.randn(3, 5, 8), torch.randint(0, len(TAGS), (3, 5))
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    nll, tags = step(x, labels, mask)
    # the policy of trainer=fsdp: the CRF (a leaf that trains) is a unit of its own, sharded over 2 ranks
    wrapped = FSDP(step, auto_wrap_policy=lora_wrap_policy([]), use_orig_params=True, device_id=torch.device("cpu"))
    got_nll, got_tags = wrapped(x, labels, mask)
    return float(nll), tags, float(got_nll), got_tags


def recompute_decision(rank: int) -> bool:
    from llmner.backbone import Backbone
    from llmner.backbone.testing import TINY_RANDOM

    backbone = Backbone(TINY_RANDOM, dtype="float32", gradient_checkpointing=16)
    n = 4 if rank == 0 else 40  # rank 0's batch is short, rank 1's long
    ids = torch.randint(10, 400, (1, n), generator=torch.Generator().manual_seed(rank))
    backbone(ids, torch.ones_like(ids)).sum().backward()
    return all(layer.gradient_checkpointing for layer in backbone.recompute.layers)


def gpu_path_checks(rank: int) -> dict:
    """Every two-process check of tests/test_gpu_paths.py on this rank: its result, or its traceback (a str)."""
    out = {}
    for name, check in (("crf_under_fsdp", crf_under_fsdp), ("recompute", recompute_decision)):
        try:
            out[name] = check(rank)
        except Exception:  # noqa: BLE001 - reported by the test that reads it; the other check still runs
            out[name] = traceback.format_exc()
    return out
