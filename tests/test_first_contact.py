"""What a new user tries first: the README's command shapes, short budgets, a crash and a resume, bad file arguments.

Each command shape of the README is composed against the real config (so the README cannot name a
key or a group that does not exist), and the shapes that once crashed are run on the tiny model.
"""

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
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
        elif key in ("ckpt_path", "init_from"):
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


SIZES = ["corpus.num_train=200", "corpus.num_validation=20", "corpus.num_test=20"]


@pytest.mark.parametrize("overrides", [
    ["debug=fast", *(f"data.{x}" for x in SIZES)],                    # the default selection
    ["experiment=crime_crf_cpu", "debug=fast", "backbone.layer=-1", "backbone.lora_layers=1",  # val_check_interval (280)
     *(f"data.corpora.generated.data.{x}" for x in SIZES)],                                   # > the budget; a mix
])
def test_debug_fast_runs_and_validates_at_the_end(overrides, tmp_path):
    cfg = compose_config(overrides + ["backbone=tiny_random", "trainer.accelerator=cpu"], tmp_path)
    assert cfg.trainer.max_steps <= 5 and cfg.model.encoder.max_length <= 128  # few, short windows
    metrics, objects = train(cfg)
    assert metrics["train/steps"] == cfg.trainer.max_steps  # debug=fast's budget, whatever the epochs
    assert "val/f1" in metrics and "test/f1" in metrics
    assert objects["best_ckpt"] and Path(objects["best_ckpt"]).is_file()  # validated, so selected
    if "corpora" in cfg.data:  # debug=fast's limits reach each corpus of a mix: at most 4 validation reports each
        dm = objects["datamodule"]
        assert all(b - a <= 4 for a, b in dm.groups("val").values()) and len(dm.groups("val")) == 2


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


class PauseAt(L.Callback):
    """Stops the run in its tracks once ``step`` steps are done: writes ``marker`` and sleeps, so that a
    test can kill it at a known step, whatever the machine's speed (a test's own callback, run by the child)."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:  # the checkpoints of that step were written at its batch's end
            Path(self.marker).write_text(str(trainer.global_step))
            time.sleep(600)


def test_killed_run_resumes_from_its_latest_checkpoint_to_the_same_final_step(tiny_conll, tmp_path, caplog):
    total, killed_at = 30, 20
    marker = tmp_path / "paused"
    args = [sys.executable, "-m", "llmner.train", *TINY, f"data.path={tiny_conll}", "data.batch_size=2", f"trainer.max_steps={total}",
            "callbacks.latest.every_n_train_steps=10", "test=false", f"hydra.run.dir={tmp_path / 'killed'}",
            "+callbacks.pause._target_=tests.test_first_contact.PauseAt", f"+callbacks.pause.step={killed_at}",
            f"+callbacks.pause.marker={marker}"]
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    log_file = tmp_path / "stderr.txt"
    with open(log_file, "w") as stderr:
        proc = subprocess.Popen(args, cwd=README.parent, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 600
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), log_file.read_text()[-3000:]
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: nothing of the run's own shutdown happens
        proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed" / "metrics.json").exists()
    step = torch.load(last, weights_only=True)["global_step"]
    assert step == killed_at  # saved every 10 steps: the kill at step 20 finds step 20 on disk
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


def run_entry_point(module: str, args: list[str], tmp_path: Path, capsys) -> tuple[int, str]:
    """``python -m <module> <args>`` in this process: its exit status and what it printed to stderr."""
    import importlib

    main = importlib.import_module(module).main
    argv = sys.argv
    sys.argv = [module, f"--config-path={README.parent / 'conf'}", *args, f"hydra.run.dir={tmp_path / 'hydra'}"]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_checkpoint):
    """Bad inputs a new user gives by mistake: a text file for a checkpoint, a missing file, a folder, a file for a folder."""
    d = tmp_path_factory.mktemp("bad")
    (d / "bad.ckpt").write_text("junk\n")  # `echo junk > bad.ckpt`
    (d / "folder").mkdir()
    (d / "afile").write_text("not a folder\n")
    return d


BAD_INPUTS = [  # (entry point, arguments, what the one line must say); {d}: the inputs' folder, {ckpt}: a good checkpoint
    ("llmner.predict", ["ckpt_path={d}/bad.ckpt", "text=x"], "{d}/bad.ckpt: not a readable PyTorch checkpoint"),
    ("llmner.predict", ["ckpt_path={ckpt}", "file={d}/missing.txt"], "file={d}/missing.txt: no such file (expected a UTF-8 text file"),
    ("llmner.predict", ["ckpt_path={ckpt}", "file={d}/folder"], "file={d}/folder: is a directory"),
    ("llmner.predict", ["text=x"], "config ckpt_path: required"),
    ("llmner.predict", ["ckpt_path={ckpt}", "text=x", "out={d}/folder"], "out={d}/folder: is a directory (expected a JSONL file"),
    ("llmner.predict", ["ckpt_path={ckpt}", "text=x", "out={d}/missing/preds.jsonl"], "out={d}/missing/preds.jsonl: no such directory"),
    ("llmner.evaluate", ["ckpt_path={d}/missing.ckpt"], "{d}/missing.ckpt: no such checkpoint file"),
    ("llmner.evaluate", ["ckpt_path={d}/folder"], "{d}/folder: a directory, not a checkpoint file"),
    ("llmner.evaluate", ["ckpt_path={ckpt}", "data=conll2003", "data.path={d}/missing"], "{d}/missing: not a directory"),
    ("llmner.export", ["ckpt_path={ckpt}", "out={d}/afile"], "out={d}/afile: is a file"),
    ("llmner.export", ["ckpt_path={ckpt}", "out={d}/afile/model"], "out={d}/afile/model: cannot be created"),
    ("llmner.export", ["ckpt_path={d}/bad.ckpt", "out={d}/out"], "{d}/bad.ckpt: not a readable PyTorch checkpoint"),
    ("llmner.train", ["backbone=tiny_random", "ckpt_path={d}/bad.ckpt"], "{d}/bad.ckpt: not a readable PyTorch checkpoint"),
    ("llmner.train", ["backbone=tiny_random", "ckpt_path={d}/folder"], "ckpt_path={d}/folder: a directory, not a checkpoint"),
    ("llmner.train", ["backbone=tiny_random", "data=crime_bio", "data.path={d}/missing"], "{d}/missing: not a directory"),
    ("llmner.train", ["backbone=tiny_random", "data=crime_conversations", "data.path={d}/missing.jsonl"],
     "{d}/missing.jsonl: no such file (expected a JSONL file"),
    ("llmner.train", ["backbone=tiny_random", "data=conll2003", "data.path={d}/afile"], "{d}/afile: not a directory"),
]


@pytest.mark.parametrize("module, args, message", BAD_INPUTS, ids=[f"{m}:{a[-1]}" for m, a, _ in BAD_INPUTS])
def test_bad_file_arguments_get_one_line_and_status_2(module, args, message, inputs, tiny_checkpoint, tmp_path, capsys):
    fill = dict(d=inputs, ckpt=tiny_checkpoint)
    code, err = run_entry_point(module, [a.format(**fill) for a in args], tmp_path, capsys)
    command = module.split(".")[-1]
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith(f"llmner {command}: {message.format(**fill)}"), err
    assert "Traceback" not in err


def test_a_text_file_as_checkpoint_is_one_line_from_the_shell(tmp_path):
    """The shape the issue reported: ``echo junk > bad.ckpt`` then predict, as a subprocess."""
    (tmp_path / "bad.ckpt").write_text("junk\n")
    proc = subprocess.run([sys.executable, "-m", "llmner.predict", "ckpt_path=bad.ckpt", "text=x", f"hydra.run.dir={tmp_path}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(README.parent)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("llmner predict: bad.ckpt: not a readable PyTorch checkpoint")
