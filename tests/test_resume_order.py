"""A resumed run draws the batches the uninterrupted run would: the epoch's own order, and inside an
epoch the batches not yet trained on (``BucketBatchSampler``, ``ResumableLoader``), the trunk cache on.

Oracle: the same run without interruption, compared weight for weight (dropout off: Lightning does not
restore the random state, so with dropout a resumed run draws other masks)."""

import lightning as L
import pytest
import torch

from llmner.backbone import trunk
from llmner.data.datamodule import BucketBatchSampler, EpochIndices, ResumableLoader
from llmner.train import train
from tests.conftest import TINY, compose_config


def test_the_epoch_lightning_sets_picks_that_epochs_order():
    lengths = [(7 * i) % 23 + 1 for i in range(50)]
    counting = BucketBatchSampler(lengths, batch_size=4, pool=3, seed=5, sampler=list(range(50)))  # counts its own passes
    passes = [list(counting) for _ in range(4)]
    assert passes[0] != passes[3]
    told = BucketBatchSampler(lengths, batch_size=4, pool=3, seed=5)
    assert isinstance(told.sampler, EpochIndices)
    told.sampler.set_epoch(3)  # what Lightning does at the start of epoch 3, a resumed one included
    assert list(told) == passes[3]
    told.sampler.set_epoch(0)
    assert list(told) == passes[0]


def test_a_loaders_state_skips_the_batches_a_checkpoint_trained_on():
    lengths = [(5 * i) % 17 + 1 for i in range(40)]
    loader = ResumableLoader(list(range(40)), batch_sampler=BucketBatchSampler(lengths, batch_size=4, seed=1))
    loader.batch_sampler.sampler.set_epoch(2)
    whole = [b.tolist() for b in loader]
    it = iter(loader)
    seen = [next(it).tolist() for _ in range(3)]
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 3} and seen == whole[:3]
    again = ResumableLoader(list(range(40)), batch_sampler=BucketBatchSampler(lengths, batch_size=4, seed=1))
    again.load_state_dict(state)
    again.batch_sampler.sampler.set_epoch(2)
    assert [b.tolist() for b in again] == whole[3:]
    assert [b.tolist() for b in again] == whole  # the skip is for the resumed pass only
    again.load_state_dict(state)
    again.batch_sampler.sampler.set_epoch(3)  # the checkpoint ended epoch 2: nothing of epoch 3 to skip
    assert len(list(again)) == len(whole)


class SaveAt(L.Callback):
    """Writes a checkpoint after training step ``step``, as ``callbacks.latest`` would at that step."""

    def __init__(self, step: int, path: str) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


CACHED = TINY + ["backbone.lora_layers=1", "backbone.cache=true", "backbone.attention=bidirectional", "backbone.unmask_layers=top",
                 "backbone.lora_dropout=0", "head.dropout=0", "data.batch_size=16", "model.lr_backbone=5e-3", "model.lr_head=5e-2",
                 "trainer.max_steps=25", "test=false", "trainer.val_check_interval=5", "trainer.check_val_every_n_epoch=null"]


def last_weights(run) -> dict[str, torch.Tensor]:
    """The run's final state (``last.ckpt``; the model object holds the best checkpoint's weights after training)."""
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 25
    return ckpt["state_dict"]


@pytest.fixture(scope="module")
def straight(tiny_conll, tmp_path_factory):
    """25 steps without interruption (an epoch is 15 batches), with checkpoints taken at steps 7 and 20."""
    out = tmp_path_factory.mktemp("straight")
    trunk._STORES.clear()
    saves = [f"+callbacks.save{s}._target_=tests.test_resume_order.SaveAt" for s in (7, 20)]
    saves += [f"+callbacks.save{s}.step={s}" for s in (7, 20)] + [f"+callbacks.save{s}.path={out / f'step{s}.ckpt'}" for s in (7, 20)]
    train(compose_config(CACHED + [f"data.path={tiny_conll}", *saves], out))
    return out, last_weights(out)


@pytest.mark.parametrize("step", [7, 20])
def test_a_run_resumed_inside_an_epoch_ends_with_the_uninterrupted_runs_weights(straight, tiny_conll, tmp_path, step, recwarn):
    out, weights = straight
    trunk._STORES.clear()  # a new process: the resumed run fills the trunk cache again
    ckpt = out / f"step{step}.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == step
    resumed, objects = train(compose_config(CACHED + [f"data.path={tiny_conll}", f"ckpt_path={ckpt}"], tmp_path))
    assert objects["trainer"].global_step == 25 and resumed["cache/train_fill_seconds"] > 0
    assert not [w for w in recwarn if "not resumable" in str(w.message)]
    again = last_weights(tmp_path)
    assert again.keys() == weights.keys() and any("lora" in n for n in weights)
    for name in weights:
        torch.testing.assert_close(again[name], weights[name], atol=1e-6, rtol=1e-5, msg=name)


def test_a_checkpoint_resumes_with_bucketing_switched_either_way(tiny_conll, tmp_path):
    base = TINY + [f"data.path={tiny_conll}", "data.batch_size=16", "test=false"]
    train(compose_config(base + ["trainer.max_steps=3"], tmp_path / "bucketed"))
    ckpt = tmp_path / "bucketed" / "checkpoints" / "last.ckpt"
    _, objects = train(compose_config(base + ["trainer.max_steps=6", "data.bucket=false", f"ckpt_path={ckpt}"], tmp_path / "plain"))
    assert objects["trainer"].global_step == 6  # Lightning refused it when only bucketed loaders had a state
    back = tmp_path / "plain" / "checkpoints" / "last.ckpt"
    _, objects = train(compose_config(base + ["trainer.max_steps=9", f"ckpt_path={back}"], tmp_path / "again"))
    assert objects["trainer"].global_step == 9
