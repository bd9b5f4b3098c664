"""Several processes under Hydra: every DDP rank of a run, or of each job of a multirun, in that job's folder.

Lightning's DDP launcher (``strategy: ddp``) starts the other ranks by running the same command again
(``python -m llmner.train <its arguments>``) with ``hydra.run.dir`` set to the run's folder, so that
all ranks of a single run share one folder (``lightning.fabric.strategies.launchers.subprocess_script``).
Under a multirun (``-m``) that goes wrong twice:

- the arguments still hold ``-m`` and the whole sweep, so each rank would run every job, in folders of
  its own (``hydra.run.dir`` is ignored in multirun mode);
- the launcher leaves ``LOCAL_RANK``, ``MASTER_PORT``... in the main process's environment, and the
  first job's process group stays open: Lightning takes the second job for one started by an
  external launcher (torchrun, SLURM), starts no ranks and waits for them forever.

``hydra_job()`` wraps each job: the relaunch command becomes this job's overrides as a single run in
this job's folder, and afterwards the process group is closed and the environment restored. In a job
of a submitit launcher (``hydra/launcher=local``), ``__main__`` is submitit's runner: the relaunch is
pointed at the entry point's module. (Under ``hydra/launcher=slurm`` with ``tasks_per_node`` equal to
``trainer.devices`` SLURM starts the ranks and Lightning relaunches nothing.)

``lora_wrap_policy()`` is FSDP's wrapping policy for a frozen backbone with adapters (``trainer=fsdp``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write
from torch import nn
from torch.distributed.fsdp.wrap import CustomPolicy

# What Lightning's launcher writes into os.environ (torchrun and SLURM set them from outside: kept then).
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def hydra_job(entry: str | None = None) -> Iterator[None]:
    """Run one Hydra job so that the ranks Lightning starts join it, and the next job starts clean.

    Args:
        entry: the entry point's module (``llmner.train``). Lightning starts the other ranks with
            ``python -m <the __main__ module>``, which in a job of a submitit launcher
            (``hydra/launcher=local``) is submitit's job runner: the job points it at ``entry`` instead.
    """
    env = {k: os.environ.get(k) for k in LAUNCHER_ENV}
    argv = list(sys.argv)
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    if entry and spec is not None and spec.name != entry:
        main.__spec__ = importlib.util.find_spec(entry)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra_cfg = HydraConfig.get()
        sys.argv = [argv[0], *hydra_cfg.overrides.task]  # this job's values, as a single run
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir  # where Lightning points the other ranks
    try:
        yield
    finally:
        sys.argv = argv
        main.__spec__ = spec
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def is_fsdp_unit(layers: frozenset[str], module: nn.Module) -> bool:
    """Whether FSDP wraps ``module`` on its own: a layer named in ``layers``, or a leaf that trains."""
    if type(module).__name__ in layers:
        return True
    is_leaf = next(module.children(), None) is None
    return is_leaf and any(p.requires_grad for p in module.parameters(recurse=False))


def lora_wrap_policy(layers: Sequence[str]) -> CustomPolicy:
    """FSDP units for a frozen backbone with adapters: each transformer layer, and inside it each leaf
    module that trains (LoRA's A and B matrices; outside the layers the head and the CRF).

    FSDP flattens a unit's weights into one tensor and keeps gradients per unit: a unit that mixed
    frozen weights with adapters would hold gradient memory for the frozen ones too, and could not
    mix the backbone's bf16 with the adapters' fp32 at all. Split this way, every unit is all frozen
    or all trained, of one dtype (the rule of peft's ``fsdp_auto_wrap_policy`` and torchtune's
    ``lora_fsdp_wrap_policy``, which need the model before it exists here; this one matches by name).

    Args:
        layers: class names of the transformer layers (``LlamaDecoderLayer``, ``BertLayer``, ...).
    """
    return CustomPolicy(partial(is_fsdp_unit, frozenset(layers)))
