"""The benchmark entry point and ``python -m llmner.report`` end to end on the tiny model.

The statistics they use are checked on hand-made cases in ``test_evaluation_statistics.py``."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from seqeval.metrics import f1_score

from llmner import report
from llmner.benchmark import benchmark
from llmner.evaluation.predictions import read_predictions
from llmner.evaluation.runs import read_curves
from llmner.evaluation.tables import compare
from llmner.guards import SelectionError
from tests.conftest import compose_config

SYSTEMS = 'systems=[{name:linear,overrides:["head=linear"]},{name:crf,overrides:["head=crf"]}]'
EXTRA = 'extra_overrides=["backbone=tiny_random","trainer.accelerator=cpu","data.batch_size=16","model.lr_backbone=5e-3","model.lr_head=5e-2"]'


def bench_overrides(tiny_conll, steps=8):
    return [SYSTEMS, EXTRA, f"data_path={tiny_conll}", f"max_steps={steps}", "seeds=[1,2]", "bootstrap_samples=200"]


# --- the entry point -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench(tiny_conll, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = compose_config(bench_overrides(tiny_conll), out, config_name="benchmark")
    return out, benchmark(cfg)


def test_benchmark_writes_results_summary_tests_and_plots(bench):
    out, summary = bench
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and set(results["system"]) == {"linear", "crf"} and set(results["seed"]) == {1, 2}
    assert (results["train/steps"] == 8).all()  # the same budget for every system
    assert (results["test/sentences"] == 40).all() and (results["test/sentences_per_second"] > 0).all()
    assert (results["memory/peak_mb"] > 0).all() and (results["params/trainable"] > 0).all()
    for system, seed in (("linear", 1), ("crf", 2)):
        run = out / system / f"seed{seed}"
        p = read_predictions(run)
        gold, pred = p.gold, p.pred
        assert len(gold) == 40  # every test sentence, scored by seqeval as metrics.json says
        assert json.loads((run / "metrics.json").read_text())["test/f1"] == pytest.approx(f1_score(gold, pred), abs=1e-6)
    # the linear and CRF heads differ in their parameters (the CRF's transitions)
    assert results.groupby("system")["params/trainable"].first()["crf"] > results.groupby("system")["params/trainable"].first()["linear"]
    assert list(summary["system"]) == ["linear", "crf"]
    assert {"test_f1_mean", "test_f1_sd", "f1_PER", "f1_LOC", "f1_ORG", "precision", "recall", "train_seconds",
            "test_sentences_per_s", "trainable_params", "peak_memory_mb"} <= set(summary.columns)
    assert pd.read_csv(out / "summary.csv")["test_f1_mean"].tolist() == pytest.approx(summary["test_f1_mean"].tolist())
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert len(comparisons) == 1
    means = summary.set_index("system")["test_f1_mean"]  # the bootstrap's delta is the pooled F1 difference
    assert abs(comparisons["bootstrap_delta"][0]) == pytest.approx(abs(means["linear"] - means["crf"]), abs=0.05)
    text = (out / "summary.md").read_text()
    assert "| linear |" in text and "## Paired tests" in text and " ± " in text
    for png in ("f1_by_type.png", "f1_vs_time.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_recomputes_the_summary_from_the_run_folders(bench):
    out, summary = bench
    (out / "summary.csv").unlink()
    report.main(["benchmark", str(out), "--samples", "50"])
    again = pd.read_csv(out / "summary.csv")
    assert again["test_f1_mean"].tolist() == pytest.approx(summary["test_f1_mean"].tolist())


def test_runs_without_predictions_keep_their_t_tests_and_leave_the_bootstrap(bench, tmp_path):
    """A results table combined from old runs whose folders are gone: t-tests over every seed,
    the bootstrap over the seeds whose predictions are left, equal to a report of those runs alone."""
    out, _ = bench
    results = pd.read_csv(out / "results.csv")
    gone = results[results["seed"] == 1].assign(output_dir=str(tmp_path / "gone"))
    mixed = pd.concat([gone, results[results["seed"] == 2]], ignore_index=True)
    full = compare(results, samples=100).iloc[0]
    part = compare(mixed, samples=100).iloc[0]
    alone = compare(results[results["seed"] == 2], samples=100).iloc[0]
    assert part["seeds"] == 2 and part["ttest_p"] == pytest.approx(full["ttest_p"], nan_ok=True)
    assert part["bootstrap_seeds"] == 1 and full["bootstrap_seeds"] == 2
    for k in ("bootstrap_delta", "bootstrap_ci_low", "bootstrap_ci_high", "bootstrap_p"):
        assert part[k] == pytest.approx(alone[k])
    none = compare(gone, samples=100).iloc[0]
    assert none["bootstrap_seeds"] == 0 and np.isnan(none["bootstrap_p"]) and none["seeds"] == 1


def test_a_finished_run_is_not_trained_again(bench, tiny_conll):
    out, summary = bench
    cfg = compose_config(bench_overrides(tiny_conll), out, config_name="benchmark")
    before = (out / "crf" / "seed1" / "metrics.json").stat().st_mtime
    again = benchmark(cfg)
    assert (out / "crf" / "seed1" / "metrics.json").stat().st_mtime == before
    assert again["test_f1_mean"].tolist() == pytest.approx(summary["test_f1_mean"].tolist())


@pytest.mark.parametrize("override", [
    "optimized_metric=test/f1",
    'extra_overrides=["callbacks.model_checkpoint.monitor=test/f1"]',
])
def test_selection_on_test_is_refused_before_training(tiny_conll, tmp_path, override):
    cfg = compose_config(bench_overrides(tiny_conll) + [override], tmp_path, config_name="benchmark")
    with pytest.raises(SelectionError, match="selects on the test set"):
        benchmark(cfg)
    assert not (tmp_path / "linear").exists()


def test_command_line_refuses_selection_on_test_with_a_clear_message(tiny_conll, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "llmner.benchmark", *bench_overrides(tiny_conll), "optimized_metric=test/f1",
         f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "optimized_metric=test/f1 selects on the test set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_system_cannot_change_the_shared_budget(tiny_conll, tmp_path):
    cheat = 'systems=[{name:a,overrides:["head=crf","trainer.max_steps=1000"]}]'
    cfg = compose_config(bench_overrides(tiny_conll) + [cheat], tmp_path, config_name="benchmark")
    with pytest.raises(ValueError, match="budget and seeds are the benchmark's"):
        benchmark(cfg)


def test_curves_read_every_validation_of_every_run(bench, tmp_path):
    out, _ = bench
    report.main(["curves", str(out), "--out", str(tmp_path)])
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert set(curves["run"]) == {f"{s}/seed{n}" for s in ("linear", "crf") for n in (1, 2)}
    for run, points in curves.groupby("run"):
        metrics = json.loads((out / run / "metrics.json").read_text())
        # the benchmark validates once, at the end of the 8-step budget (Lightning logs it at the last
        # batch's 0-based index, 7): that value is the run's val/f1
        assert metrics["train/steps"] == 8 and points["step"].tolist() == [7]
        assert points["val/f1"].iloc[-1] == pytest.approx(metrics["val/f1"], abs=1e-6)
        assert (points["seconds"] > 0).all()  # after the run's first event: 8 steps were trained before it
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_join_a_resumed_runs_event_files_and_name_a_missing_metric(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    board = tmp_path / "runs" / "a" / "tensorboard"
    written = [(100, 0.5), (200, 0.6), (300, 0.7)]
    for part in (written[:2], written[2:]):  # a run killed after step 200 and resumed: two event files
        w = SummaryWriter(str(board), filename_suffix=f".{part[0][0]}")
        for step, value in part:
            w.add_scalar("val/f1", value, step)
            w.add_scalar("train/loss", 1 / step, step)
        w.close()
    curves = read_curves([tmp_path / "runs"])
    assert curves["step"].tolist() == [s for s, _ in written]
    assert curves["val/f1"].tolist() == pytest.approx([v for _, v in written])
    assert set(curves["run"]) == {"a"}
    with pytest.raises(SystemExit) as exit_:
        report.main(["curves", str(tmp_path / "runs"), "--metric", "val/f2", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "val/f2" in capsys.readouterr().err
