"""The learning-rate schedule follows whichever budget ends first: steps, epochs or time."""

import math

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from llmner.schedule import BudgetSchedule, budget_scheduler, lr_factor
from tests.conftest import TINY, compose_config


class Clock:
    """A stand-in for Lightning's Timer: elapsed and remaining seconds set by hand."""

    def __init__(self, elapsed: float, total: float | None) -> None:
        self.elapsed, self.total = elapsed, total

    def time_elapsed(self, stage):
        return self.elapsed

    def time_remaining(self, stage):
        return None if self.total is None else max(0.0, self.total - self.elapsed)


def test_a_step_budget_gives_the_factors_of_transformers_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = get_linear_schedule_with_warmup(opt, 10, 100).lr_lambdas[0]
    ours = BudgetSchedule(100, 10 / 100)
    for step in range(0, 121):
        assert ours(step) == pytest.approx(theirs(step), abs=1e-12), step


def test_factor_by_hand():
    by_hand = {0: 0.0, 0.05: 0.5, 0.1: 1.0, 0.55: 0.5, 1.0: 0.0, 1.2: 0.0}  # progress -> factor, 10% warm-up
    for progress, factor in by_hand.items():
        assert lr_factor(progress, 0.1) == pytest.approx(factor), progress
    assert lr_factor(0.5, 0.0) == pytest.approx(0.5)


def test_time_ending_first_drives_the_schedule_from_the_first_batch():
    """max_epochs: 100 of a corpus gives 175,600 steps; a 100 s budget ends long before them."""
    clock = Clock(elapsed=20.0, total=120.0)  # 20 s went to setting up (cache fill) before the first batch
    sched = BudgetSchedule(175_600, 0.1, clock)
    assert sched(0) == 0.0  # LambdaLR's call at construction
    sched.start()  # the module, at the first training batch
    assert sched(1) == pytest.approx(1 / 17_560)  # no time used yet; one step of 175,600 done
    clock.elapsed = 200.0
    sched.start()  # a second call (or a resumed run's) keeps the first start
    assert sched.start_s == 20.0
    by_hand = {25.0: 0.5, 30.0: 1.0, 75.0: 0.5, 120.0: 0.0, 130.0: 0.0}  # 100 s of training, 10 s warm-up
    for elapsed, factor in by_hand.items():
        clock.elapsed = elapsed
        assert sched(2) == pytest.approx(factor), elapsed


def test_steps_ending_first_drive_the_schedule_under_a_time_budget():
    clock = Clock(elapsed=0.0, total=3600.0)
    sched = BudgetSchedule(100, 0.1, clock)
    sched.start()
    clock.elapsed = 1.0  # 1% of the time, 50% of the steps
    assert sched(50) == pytest.approx(lr_factor(0.5, 0.1))
    assert sched(100) == 0.0


def test_the_schedule_state_is_plain_data_and_resumes():
    clock = Clock(elapsed=20.0, total=120.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = budget_scheduler(opt, 175_600, 0.1, clock)
    scheduler.lr_lambdas[0].start()  # the first batch: the clock starts at 20 s
    opt.step()
    scheduler.step()
    state = scheduler.state_dict()
    assert state["lr_lambdas"] == [{"total_steps": 175_600.0, "warmup": 0.1, "start_s": 20.0}]
    resumed = budget_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 175_600, 0.1,
                               Clock(elapsed=75.0, total=120.0))
    resumed.load_state_dict(state)
    assert resumed.lr_lambdas[0](5) == pytest.approx(0.5)  # 55 of 100 s: half-way down
    assert budget_scheduler(opt, math.inf, 0.1, None) is None
    assert budget_scheduler(opt, math.inf, 0.1, Clock(0.0, None)) is None


@pytest.mark.parametrize("budget, steps", [
    (["trainer.max_steps=7", "trainer.max_epochs=100"], 7),   # steps end first
    (["trainer.max_steps=-1", "trainer.max_epochs=2"], 2 * 15),  # epochs end first: 240 sentences / 16
    (["trainer.max_steps=500", "trainer.max_epochs=1"], 15),
])
def test_the_run_ends_where_its_learning_rate_reaches_zero(tiny_conll, tmp_path, budget, steps):
    from hydra.utils import instantiate

    from llmner.builders import build_model

    cfg = compose_config(TINY + [f"data.path={tiny_conll}", "data.batch_size=16", "test=false",
                                 "+trainer.limit_val_batches=0", *budget], tmp_path)
    dm = instantiate(cfg.data)
    model = build_model(cfg, dm.tags)
    dm.encoder = model.encoder
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == steps
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.lr_lambdas[0].total_steps == steps
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.0  # decayed to 0 exactly at the end


def test_a_time_budget_inside_many_epochs_schedules_by_time(tiny_conll, tmp_path):
    """The defect: max_time with max_epochs: 100 scheduled 100 epochs of steps and never left the warm-up."""
    from hydra.utils import instantiate

    from llmner.builders import build_model

    cfg = compose_config(TINY + [f"data.path={tiny_conll}", "trainer.max_time=00:00:10:00", "trainer.max_epochs=100",
                                 "trainer.max_steps=3", "test=false", "+trainer.limit_val_batches=0"], tmp_path)
    dm = instantiate(cfg.data)
    model = build_model(cfg, dm.tags)
    dm.encoder = model.encoder
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    sched = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert sched.timer is not None and sched.start_s is not None  # the time budget is followed too
