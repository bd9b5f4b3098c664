"""The learning-rate schedule of a run: linear warm-up, then linear decay to 0 where the first budget ends.

A run stops at whichever of its budgets ends first: ``trainer.max_steps``, ``trainer.max_epochs``
(Lightning folds both into ``estimated_stepping_batches``) or ``trainer.max_time`` (Lightning's
``Timer``). The schedule follows the same rule: its progress is the larger of the share of steps
done and the share of training time used, so the learning rate reaches 0 when the run ends, not
when a budget that would have ended later runs out (a 15-minute run inside ``max_epochs: 100``
must not spend all its time warming up for 175,600 steps).

Time is counted from the start of the first training batch (``start``, called by the module):
filling the trunk cache, which runs inside the ``max_time`` budget, is not part of the warm-up. With steps alone the factors equal
``transformers.get_linear_schedule_with_warmup``'s, which knows steps only; hence this module.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Timer


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` share of the budget, then linear decay to 0 at 1."""
    if progress < warmup:
        return progress / warmup
    return max(0.0, (1.0 - progress) / (1.0 - warmup)) if warmup < 1 else 0.0


class BudgetSchedule:
    """``LambdaLR``'s factor for a step, from the steps and the time used.

    Args:
        total_steps: the step budget (``math.inf``: none).
        warmup: the share of the budget spent warming up, in [0, 1].
        timer: Lightning's ``Timer`` when ``trainer.max_time`` is set, else ``None``.

    ``LambdaLR`` saves a callable's ``__dict__`` in checkpoints (plain data: the totals and the
    time training started, so a resumed run continues the same schedule); the timer lives in a
    slot, outside it, because checkpoints hold no objects.
    """

    __slots__ = ("timer", "__dict__")

    def __init__(self, total_steps: float, warmup: float, timer: Timer | None = None) -> None:
        self.total_steps = float(total_steps)
        self.warmup = float(warmup)
        self.start_s: float | None = None  # the timer's elapsed training time when the first batch started
        self.timer = timer

    def start(self) -> None:
        """Start the schedule's clock (at the first training batch; a resumed run keeps its start)."""
        if self.start_s is None and self.timer is not None:
            self.start_s = self.timer.time_elapsed("train")

    def time_share(self) -> float:
        """The share of ``max_time`` used since the first training batch (0 without a time budget or before it)."""
        if self.timer is None or self.start_s is None or self.timer.time_remaining("train") is None:
            return 0.0
        elapsed, remaining = self.timer.time_elapsed("train"), self.timer.time_remaining("train")
        span = elapsed + remaining - self.start_s
        return min(1.0, (elapsed - self.start_s) / span) if span > 0 else 1.0

    def progress(self, step: int) -> float:
        steps = step / self.total_steps if math.isfinite(self.total_steps) and self.total_steps > 0 else 0.0
        return max(steps, self.time_share())

    def __call__(self, step: int) -> float:
        return lr_factor(self.progress(step), self.warmup)


def budget_scheduler(optimizer: torch.optim.Optimizer, total_steps: float, warmup: float,
                     timer: Timer | None) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-step ``LambdaLR`` following whichever budget ends first; ``None`` when there is no budget."""
    has_time = timer is not None and timer.time_remaining("train") is not None
    if not math.isfinite(total_steps) and not has_time:
        return None
    return torch.optim.lr_scheduler.LambdaLR(optimizer, BudgetSchedule(total_steps, warmup, timer if has_time else None))
