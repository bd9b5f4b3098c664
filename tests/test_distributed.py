"""Several processes: DDP simulated on the CPU (2 gloo processes), and the GPU-only strategies.

The CPU tests run the real command lines as subprocesses (Lightning starts the second rank by running
the command again), on a corpus whose sentences are split into windows, an odd number of them, so
that the distributed sampler repeats one and a sentence's windows land on different ranks. The 2-process figures are compared with those of one process: a wrong gather or
de-duplication changes the F1 or the predictions file.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import instantiate
from lightning.pytorch.strategies import DeepSpeedStrategy
from torch.distributed.fsdp.wrap import CustomPolicy

from llmner.builders import build_model
from llmner.cli import user_error
from llmner.distributed import LAUNCHER_ENV, is_fsdp_unit
from llmner.evaluate import evaluate
from tests.conftest import CONF, compose_config, write_corpus

# One thread per process (two ranks share the cores), no Hub, and no cluster variables inherited from
# whatever started pytest (under srun or torchrun, Lightning would wait for ranks started by the cluster).
CLUSTER = (*LAUNCHER_ENV, "RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE")
ENV = {k: v for k, v in os.environ.items() if k not in CLUSTER and not k.startswith(("SLURM_", "TORCHELASTIC_"))} | {
    "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
STEPS = 48


def run(args: list[str], timeout: int = 300) -> str:
    """``python -m <args>`` with every rank it starts; its output. Fails on a non-zero exit or a hang."""
    proc = subprocess.Popen([sys.executable, "-m", *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a rank waiting for another forever: end the whole group
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(args[:3])} ... still running after {timeout} s:\n{out[-3000:]}")
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A learnable corpus; its test set gives an odd number of windows (checked where it matters)."""
    return write_corpus(tmp_path_factory.mktemp("odd_conll"), 120, 21, 27)


@pytest.fixture(scope="module")
def common(corpus) -> list[str]:
    return ["experiment=conll_crf", "backbone=tiny_random", f"data.path={corpus}",
            "model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=8", "data.eval_batch_size=4",
            "model.encoder.max_length=16", "model.encoder.context_words=2",  # long sentences -> several windows
            "model.encoder.repeat=1",  # conll_crf repeats windows; the window counts below assume one copy
            "trainer.log_every_n_steps=1"]


def folders(root: Path) -> list[str]:
    """Every folder below ``root``, relative to it."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())


@pytest.fixture(scope="module")
def ddp_run(common, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    out = root / "run"  # a run folder that a rank made for itself would land in root / "logs"
    run(["llmner.train", *common, "trainer=ddp_sim", f"trainer.max_steps={STEPS}", "callbacks.latest.every_n_train_steps=24",
         f"paths.log_dir={root / 'logs'}", f"hydra.run.dir={out}"])
    return out


def conll_words(path: Path) -> list[list[tuple[str, str]]]:
    """(token, gold) per word, per sentence, of a CoNLL file (first and last column)."""
    blocks = [b for b in path.read_text().split("\n\n") if b.strip()]
    return [[(ln.split()[0], ln.split()[1 if path.suffix == ".conll" else -1]) for ln in b.splitlines()] for b in blocks]


def test_ddp_sim_trains_and_only_rank_zero_writes(ddp_run, corpus):
    metrics = json.loads((ddp_run / "metrics.json").read_text())
    assert metrics["train/steps"] == STEPS
    assert metrics["test/f1"] > 0.3  # it learned: the equality tests below do not compare two zeros
    # every test word exactly once, in order, with its gold tag: no sentence lost to the other rank or doubled
    assert conll_words(ddp_run / "test_predictions.conll") == conll_words(corpus / "test.txt")
    assert torch.load(ddp_run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS
    rank1 = (ddp_run / "train_ddp_process_1.log").read_text()  # the second rank ran, in this run's folder
    assert "trainable parameters" in rank1
    assert f"wrote {ddp_run / 'metrics.json'}" in (ddp_run / "train.log").read_text()
    assert f"wrote {ddp_run / 'metrics.json'}" not in rank1 and "results:" not in rank1  # rank 0 writes and reports
    assert not (ddp_run.parent / "logs").exists()  # no rank made a run folder of its own


def test_checkpoint_scores_the_same_on_one_and_two_processes(ddp_run, corpus, tmp_path):
    best = next((ddp_run / "checkpoints").glob("epoch*.ckpt"))
    one, objects = evaluate(compose_config([f"ckpt_path={best}", "trainer.accelerator=cpu"], tmp_path / "one", "eval"))
    dm = objects["datamodule"]
    assert len(dm.items["test"]) > len(dm.sentences["test"])  # sentences split into windows
    assert len(dm.items["test"]) % 2 == 1, "an even window count: 2 processes need no padding (change the corpus size)"
    run(["llmner.evaluate", f"ckpt_path={best}", "trainer=ddp_sim", f"hydra.run.dir={tmp_path / 'two'}"])
    assert (tmp_path / "two" / "train_ddp_process_1.log").exists()  # it did run on two processes
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    trained = json.loads((ddp_run / "metrics.json").read_text())  # the training run's own test, on 2 processes
    figures = sorted(k for k in one if k.startswith("test/") and k not in ("test/seconds", "test/loss"))
    assert "test/f1" in figures and "test/f1_PER" in figures
    for name in figures:
        assert two[name] == pytest.approx(one[name], abs=1e-9), name
        assert trained[name] == pytest.approx(one[name], abs=1e-9), name
    predictions = (tmp_path / "one" / "test_predictions.conll").read_text()
    assert (tmp_path / "two" / "test_predictions.conll").read_text() == predictions
    assert (ddp_run / "test_predictions.conll").read_text() == predictions


@pytest.fixture(scope="module")
def resumed_sweep(ddp_run, common, tmp_path_factory) -> tuple[Path, str]:  # (the multiruns folder, the output)
    """A multirun of two jobs, each resuming the DDP run under DDP; the second with the CRF's loss off,
    so that the CRF's transitions get no gradient (DDP stops on that unless told to expect it)."""
    logs = tmp_path_factory.mktemp("sweep")
    # The default sweep folder (logs/<task>/multiruns/<time>): a rank that ran the sweep itself would
    # resolve <time> anew and make a second one.
    out = run(["llmner.train", "-m", *common, "trainer=ddp_sim", f"ckpt_path={ddp_run / 'checkpoints' / 'last.ckpt'}",
               f"trainer.max_steps={STEPS + 6}", "model.loss.crf_weight=0.3,0", f"paths.log_dir={logs}"], timeout=420)
    return logs / "conll_crf" / "multiruns", out


def read_steps(logdir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_resume_under_ddp_continues_from_the_checkpoint(resumed_sweep, ddp_run):
    multiruns, out = resumed_sweep
    sweep = next(multiruns.iterdir())
    assert f"resuming from {ddp_run / 'checkpoints' / 'last.ckpt'} at step {STEPS}" in out
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["train/steps"] == STEPS + 6
        assert torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS + 6
        steps = read_steps(sweep / job / "tensorboard", "train/loss")
        assert min(steps) >= STEPS and len(steps) <= 6  # the 6 steps after the checkpoint, not a fresh start


def test_multirun_with_ddp_sim_runs_each_job_on_two_processes_in_its_folder(resumed_sweep, corpus):
    multiruns, _ = resumed_sweep
    sweeps = list(multiruns.iterdir())
    assert len(sweeps) == 1, folders(multiruns)  # one sweep folder, not one per rank
    sweep = sweeps[0]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, crf_weight in (("0", 0.3), ("1", 0)):
        folder = sweep / job
        assert f"model.loss.crf_weight={crf_weight}" in yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        assert "trainable parameters" in (folder / "train_ddp_process_1.log").read_text()  # rank 1 joined this job
        assert conll_words(folder / "test_predictions.conll") == conll_words(corpus / "test.txt")
        assert {"val/f1", "test/f1"} <= set(json.loads((folder / "metrics.json").read_text()))


# --- the strategy configs: compose everywhere, train where a GPU is -------------------------------
STRATEGIES = {
    "ddp": "DDPStrategy", "ddp_sim": "DDPStrategy", "fsdp": "FSDPStrategy",
    "deepspeed_zero2": "DeepSpeedStrategy", "deepspeed_zero3": "DeepSpeedStrategy",
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_config_composes_on_the_default_trainer(name, tmp_path):
    header = (Path(CONF) / "trainer" / f"{name}.yaml").read_text().split("defaults:")[0]
    assert header.startswith("# ") and f"trainer={name}" in header and "python -m llmner.train" in header
    cfg = compose_config(["experiment=conll_crf", f"trainer={name}"], tmp_path)
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer" and cfg.trainer.gradient_clip_val == 1.0  # from default
    assert cfg.trainer.strategy._target_ == f"lightning.pytorch.strategies.{STRATEGIES[name]}"
    assert cfg.trainer.max_epochs == 100  # the experiment's values still apply on top


def test_strategy_settings_that_matter():
    cfg = {n: compose_config([f"trainer={n}"], Path("unused")).trainer for n in STRATEGIES}
    assert cfg["ddp"].strategy.find_unused_parameters  # adapters or a CRF without gradient do not stop DDP
    assert (cfg["ddp_sim"].accelerator, cfg["ddp_sim"].devices, cfg["ddp_sim"].strategy.process_group_backend) == ("cpu", 2, "gloo")
    assert cfg["fsdp"].strategy.use_orig_params and cfg["fsdp"].strategy.state_dict_type == "full"
    assert isinstance(instantiate(cfg["fsdp"].strategy.auto_wrap_policy), CustomPolicy)
    assert (cfg["deepspeed_zero2"].strategy.stage, cfg["deepspeed_zero3"].strategy.stage) == (2, 3)
    assert cfg["deepspeed_zero3"].strategy.exclude_frozen_parameters  # checkpoints hold what trains, not the backbone
    # DeepSpeed cannot be built here (no CUDA); its arguments at least exist in this Lightning
    accepted = set(inspect.signature(DeepSpeedStrategy.__init__).parameters)
    assert set(cfg["deepspeed_zero3"].strategy) - {"_target_"} <= accepted


def fsdp_units(model: torch.nn.Module, layers: frozenset[str]) -> dict[str, list[torch.nn.Parameter]]:
    """Each parameter under the FSDP unit that would own it: the innermost wrapped module, or the root."""
    units: dict[str, list[torch.nn.Parameter]] = {}

    def visit(module: torch.nn.Module, name: str, unit: str) -> None:
        unit = name if name and is_fsdp_unit(layers, module) else unit
        units.setdefault(unit, []).extend(module.parameters(recurse=False))
        for child_name, child in module.named_children():
            visit(child, f"{name}.{child_name}" if name else child_name, unit)

    visit(model, "", "<root>")
    return {u: ps for u, ps in units.items() if ps}


def test_fsdp_wrap_policy_gives_units_all_frozen_or_all_trained_of_one_dtype(tmp_path):
    """What FSDP needs from a LoRA model, checked on the tiny Llama in bf16 (the backbone's dtype on CUDA)."""
    cfg = compose_config(["backbone=tiny_random", "backbone.dtype=bfloat16", "trainer=fsdp"], tmp_path)
    model = build_model(cfg, ["O", "B-PER", "I-PER"])
    units = fsdp_units(model, frozenset(cfg.trainer.strategy.auto_wrap_policy.layers))
    for unit, params in units.items():  # a plain per-layer policy mixes bf16 frozen weights with fp32 adapters
        assert len({(p.requires_grad, p.dtype) for p in params}) == 1, unit
    layers = [u for u in units if u.endswith(("layers.0", "layers.1"))]
    assert len(layers) == 2 and not any(p.requires_grad for u in layers for p in units[u])  # frozen layers, sharded
    assert not any(p.requires_grad for p in units["<root>"])  # the embeddings; the head and the CRF have units


@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_gpu_strategy_without_a_gpu_is_a_one_line_error(name):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the error this test checks does not arise")
    with pytest.raises(Exception) as err:
        instantiate(compose_config([f"trainer={name}"], Path("unused")).trainer)
    assert user_error(err.value) == ("config trainer: No supported gpu backend found! "
                                     "(trainer=ddp, fsdp and deepspeed_* need GPUs; trainer=ddp_sim runs on CPUs)")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def test_gpu_strategy_trains_and_its_checkpoint_scores_the_same_on_one_gpu(name, common, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device: trainer={name} needs a GPU")
    if name.startswith("deepspeed"):
        pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'llmner[deepspeed]')")
    devices = min(2, torch.cuda.device_count())
    out = tmp_path / "run"
    run(["llmner.train", *common, f"trainer={name}", f"trainer.devices={devices}", f"trainer.max_steps={STEPS}",
         f"hydra.run.dir={out}"], timeout=600)
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["train/steps"] == STEPS and trained["test/f1"] > 0.3
    best = next((out / "checkpoints").glob("epoch*.ckpt"))
    if best.is_dir():  # DeepSpeed: a folder of shards -> one file, as llmner.evaluate reads
        from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        convert_zero_checkpoint_to_fp32_state_dict(best, tmp_path / "best.ckpt")
        best = tmp_path / "best.ckpt"
    one, _ = evaluate(compose_config([f"ckpt_path={best}", "trainer.devices=1"], tmp_path / "one", "eval"))
    # bf16 on a GPU: other batch shapes (one process, not two) may flip a close call, no more
    assert one["test/f1"] == pytest.approx(trained["test/f1"], abs=0.02)
    ours, theirs = (conll_rows(d / "test_predictions.conll") for d in (tmp_path / "one", out))
    assert [r[:2] for r in ours] == [r[:2] for r in theirs]  # every word once, with its gold tag
    assert sum(a == b for a, b in zip(ours, theirs)) >= 0.98 * len(ours)


def conll_rows(path: Path) -> list[tuple[str, ...]]:
    return [tuple(ln.split()) for ln in path.read_text().splitlines() if ln.strip()]
