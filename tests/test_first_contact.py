"""What a new user tries first: the README's command shapes, short budgets, a crash and a resume.

Each command shape of the README is composed against the real config (so the README cannot name a
key or a group that does not exist), and the shapes that once crashed are run on the tiny model.
"""

import logging
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmner.train import train
from tests.conftest import TINY, compose_config, make_sentences, write_conll

README = Path(__file__).resolve().parents[1] / "README.md"
FAST = ["model.lr_backbone=5e-3", "model.lr_head=5e-2", "data.batch_size=16"]


def readme_commands(module: str) -> list[list[str]]:
    """The arguments of every ``python -m <module>`` line in the README's bash blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    out = []
    for line in (ln for b in blocks for ln in b.splitlines()):
        words = shlex.split(line, comments=True)
        if words[:3] == ["python", "-m", module]:
            out.append(words[3:])
    return out


def as_tiny(args: list[str], data: Path, ckpt: str) -> list[str]:
    """A README command's overrides, pointed at the tiny corpus and checkpoint, first value of each sweep."""
    out = []
    for a in args:
        if a == "-m":
            continue
        key, _, value = a.partition("=")
        if key in ("data.path", "data_path") or value.startswith(("../shared", "path/to", "data/")):
            value = str(data)
        elif key == "ckpt_path":
            value = ckpt
        elif "," in value and not value.startswith(("[", "{", "'")):
            value = value.split(",")[0]  # a multirun sweep: one of its points
        out.append(f"{key}={value}" if _ or value else key)
    return out


@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    cfg = compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_steps=3", "test=false"], out)
    _, objects = train(cfg)
    return str(out / "checkpoints" / "last.ckpt")


def test_readme_shows_both_first_commands_and_the_makefile_runs_them():
    first_screen = README.read_text().split("## ")[0]
    assert "make train" in first_screen and "make test" in first_screen
    makefile = (README.parent / "Makefile").read_text()
    assert "-m llmner.train experiment=$(EXPERIMENT)" in makefile and "EXPERIMENT ?= crime_crf_cpu" in makefile


@pytest.mark.parametrize("module, config, least", [("llmner.train", "train", 10), ("llmner.evaluate", "eval", 2),
                                                   ("llmner.predict", "predict", 1), ("llmner.export", "export", 1),
                                                   ("llmner.benchmark", "benchmark", 1)])
def test_every_readme_command_composes(module, config, least, tiny_conll, tiny_checkpoint, tmp_path):
    commands = readme_commands(module)
    assert len(commands) >= least  # the parser found the README's commands
    for args in commands:
        overrides = as_tiny(args, tiny_conll, tiny_checkpoint)
        cfg = compose_config(overrides, tmp_path, config_name=config)  # raises on an unknown key or group
        assert cfg.get("ckpt_path") != "???", args


@pytest.mark.parametrize("overrides", [
    ["debug=fast"],                                                   # the default selection
    ["experiment=crime_crf_cpu", "debug=fast", "backbone.layer=-1"],  # its val_check_interval (80) > batches (40)
])
def test_debug_fast_runs_and_validates_at_the_end(overrides, tmp_path):
    cfg = compose_config(overrides + ["backbone=tiny_random", "trainer.accelerator=cpu", "data.corpus.num_train=200",
                                      "data.corpus.num_validation=20", "data.corpus.num_test=20"], tmp_path)
    metrics, objects = train(cfg)
    assert metrics["train/steps"] == 20  # debug=fast's budget, whatever the epochs
    assert "val/f1" in metrics and "test/f1" in metrics
    assert objects["best_ckpt"] and Path(objects["best_ckpt"]).is_file()  # validated, so selected


def test_any_conll_corpus_form(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, n, seed in (("train", 30, 0), ("dev", 8, 1), ("test", 8, 2)):
        write_conll(corpus / f"{split}.tsv", make_sentences(n, seed), sep="\t")
    cfg = compose_config(TINY + ["data=conll2003", f"data.path={corpus}", r"data.corpus.separator=\t", "trainer.max_epochs=1"],
                         tmp_path / "run")
    metrics, _ = train(cfg)
    assert metrics["train/steps"] == 4  # one epoch of 30 sentences at batch 8
    assert cfg.task_name == "train"  # not another experiment's name and budget


def test_step_budget_below_one_epoch_with_early_stopping(tiny_conll, tmp_path):
    """``experiment=conll_crf`` (early stopping on val/f1) with a budget that ends inside the first epoch."""
    cfg = compose_config(["experiment=conll_crf", "backbone=tiny_random", "trainer.accelerator=cpu", f"data.path={tiny_conll}",
                          "trainer.max_steps=7", *FAST[:2], "data.batch_size=8"], tmp_path)  # an epoch is 30 batches
    metrics, objects = train(cfg)
    assert metrics["train/steps"] == 7 and "test/f1" in metrics
    assert torch.load(objects["best_ckpt"], weights_only=True)["global_step"] == 7  # the validation at the budget's end


def test_max_steps_overrides_max_epochs(tiny_conll, tmp_path):
    cfg = compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_epochs=3", "trainer.max_steps=50", "test=false"], tmp_path)
    metrics, _ = train(cfg)
    assert metrics["train/steps"] == 50  # an epoch is 15 batches: max_epochs=3 would stop at 45


def test_killed_run_resumes_from_its_latest_checkpoint_to_the_same_final_step(tiny_conll, tmp_path, caplog):
    total = 240
    args = [sys.executable, "-m", "llmner.train", *TINY, f"data.path={tiny_conll}", "data.batch_size=2", f"trainer.max_steps={total}",
            "callbacks.latest.every_n_train_steps=10", "test=false", f"hydra.run.dir={tmp_path / 'killed'}"]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "metrics.json").exists()
    step = torch.load(last, weights_only=True)["global_step"]
    assert 10 <= step < total and step % 10 == 0
    cfg = compose_config(TINY + [f"data.path={tiny_conll}", "data.batch_size=2", f"trainer.max_steps={total}", f"ckpt_path={last}",
                                 "test=false"], tmp_path / "resumed")
    with caplog.at_level(logging.INFO, logger="llmner.train"):
        metrics, objects = train(cfg)
    assert f"resuming from {last} at step {step}" in caplog.text
    assert objects["trainer"].global_step == total and metrics["train/steps"] == total
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == total


def test_last_checkpoint_is_the_final_state_not_the_best(tiny_conll, tmp_path):
    cfg = compose_config(TINY + FAST + [f"data.path={tiny_conll}", "trainer.max_steps=23", "callbacks.latest.every_n_train_steps=10",
                                        "test=false"], tmp_path)
    train(cfg)
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 23
