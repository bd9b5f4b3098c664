"""Sweeps: an Optuna search through ``llmner.train -m`` and a plain multirun of the benchmark, each leaving its table;
jobs in processes of their own (``hydra/launcher=local``) and sweeps sharing one Optuna study in SQLite."""

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from llmner.evaluation.tables import sweep_table

TINY_BUDGET = ["backbone=tiny_random", "trainer.accelerator=cpu", "data.batch_size=16", "trainer.num_sanity_val_steps=0"]


def run(args, tmp_path):
    proc = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_optuna_sweep_maximises_val_f1_and_leaves_its_summary(tiny_conll, tmp_path):
    sweep = tmp_path / "sweep"
    run(["llmner.train", "-m", "hparams_search=conll_optuna", f"data.path={tiny_conll}", "hydra.sweeper.n_trials=2",
         f"hydra.sweep.dir={sweep}", "trainer.max_steps=6", "trainer.check_val_every_n_epoch=null",
         "trainer.val_check_interval=6", *TINY_BUDGET], tmp_path)
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert {"model.lr_backbone", "model.lr_head", "backbone.lora_r", "model.loss.crf_weight", "head"} <= set(best["best_params"])
    trials = sweep_table(sweep)
    assert len(trials) == 2 and (sweep / "trials.csv").exists()
    assert trials["val/f1"].iloc[0] == best["best_value"]  # best first, and the value Optuna saw is val/f1
    assert "param:model.lr_head" in trials  # the sampled values, one column each
    assert pd.read_csv(sweep / "trials.csv")["val/f1"].tolist() == trials["val/f1"].tolist()


def test_benchmark_runs_as_a_multirun(tiny_conll, tmp_path):
    sweep = tmp_path / "multi"
    run(["llmner.benchmark", "-m", "max_steps=4,6", "seeds=[1]", f"data_path={tiny_conll}", "bootstrap_samples=50",
         'systems=[{name:crf,overrides:["head=crf"]}]',
         "extra_overrides=[" + ",".join(f'"{o}"' for o in TINY_BUDGET) + "]", f"hydra.sweep.dir={sweep}"], tmp_path)
    for job, steps in (("0", 4), ("1", 6)):
        results = pd.read_csv(sweep / job / "results.csv")
        assert results["train/steps"].tolist() == [steps]
        assert (sweep / job / "crf" / "seed1" / "test_predictions.conll").exists()
        assert (sweep / job / "summary.md").exists()


def job_span(log: str) -> tuple[datetime, datetime]:
    """When a submitit job started and completed, from its log."""
    def when(event: str) -> datetime:
        found = re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\) - " + event, log)
        assert found, f"no '{event}' in the job's log:\n{log[-2000:]}"
        return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return when("Starting with"), when("Job completed successfully")


def test_local_launcher_runs_a_two_job_multirun_at_once_each_job_in_its_folder(tiny_conll, tmp_path):
    """``hydra/launcher=local``: each job a process of its own (submitit), both logging to one new MLflow database."""
    mlflow = pytest.importorskip("mlflow")
    sweep = tmp_path / "grid"
    run(["llmner.train", "-m", "hydra/launcher=local", "seed=1,2", "data=conll2003", f"data.path={tiny_conll}", f"hydra.sweep.dir={sweep}",
         f"paths.log_dir={tmp_path}", "logger=[csv,mlflow]", "trainer.max_steps=3", *TINY_BUDGET], tmp_path)
    for job, seed in (("0", 1), ("1", 2)):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["train/steps"] == 3 and "test/f1" in metrics
        assert yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())[0] == f"seed={seed}"
        assert (sweep / job / "csv" / "metrics.csv").exists()
    spans = [job_span(log.read_text()) for log in (sweep / ".submitit").rglob("*_log.out")]  # one process per job
    assert len(spans) == 2 and max(start for start, _ in spans) < min(end for _, end in spans)  # the two ran at once
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # created by two processes at once, under the lock
    runs = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert sorted(r.data.tags["output_dir"] for r in runs) == [str(sweep / "0"), str(sweep / "1")]
    assert all(r.info.status == "FINISHED" and "val/f1" in r.data.metrics for r in runs)


def test_local_launcher_job_starts_its_ddp_ranks_with_the_entry_point(tiny_conll, tmp_path):
    """Lightning starts rank 1 as ``python -m <__main__>``: in a submitit job that is submitit's runner, not llmner."""
    sweep = tmp_path / "ddp"
    run(["llmner.train", "-m", "hydra/launcher=local", "trainer=ddp_sim", "seed=1", "data=conll2003", f"data.path={tiny_conll}",
         f"hydra.sweep.dir={sweep}", "trainer.max_steps=2", *TINY_BUDGET], tmp_path)
    assert "trainable parameters" in (sweep / "0" / "train_ddp_process_1.log").read_text()  # rank 1 ran llmner.train
    assert json.loads((sweep / "0" / "metrics.json").read_text())["train/steps"] == 2


def test_two_sweeps_share_one_optuna_study_in_sqlite(tiny_conll, tmp_path):
    """Two sweeps at once on one study: one trial after another in-process, the other two at a time (local launcher)."""
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    subprocess.run([Path(sys.executable).with_name("optuna"), "create-study", "--storage", storage, "--study-name", "shared",
                    "--direction", "maximize"], check=True, capture_output=True, timeout=120)
    common = ["llmner.train", "hparams_search=conll_optuna", f"data.path={tiny_conll}", f"hydra.sweeper.storage={storage}",
              "hydra.sweeper.study_name=shared", "hydra.sweeper.n_trials=2", "trainer.max_steps=3", *TINY_BUDGET]
    workers = {"a": ["hydra.sweeper.sampler.seed=1"],
               "b": ["hydra.sweeper.sampler.seed=2", "hydra/launcher=local", "hydra.sweeper.n_jobs=2"]}
    procs = {w: subprocess.Popen([sys.executable, "-m", *common, *extra, f"hydra.sweep.dir={tmp_path / w}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for w, extra in workers.items()}
    for w, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"worker {w}: {err[-3000:]}"
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # distinct trials, all recorded
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # different seeds: no repeated proposal
    f1s = sorted(json.loads(p.read_text())["val/f1"] for w in workers for p in (tmp_path / w).glob("*/metrics.json"))
    assert sorted(t.value for t in trials) == pytest.approx(f1s)  # each trial's value is its job's val/f1
    best = yaml.safe_load((tmp_path / "b" / "optimization_results.yaml").read_text())
    assert best["best_value"] <= study.best_value  # a sweep's best is the study's best when it ended


def test_slurm_launcher_config_reaches_sbatch(tiny_conll, tmp_path):
    """``hydra/launcher=slurm``: the sbatch script submitit writes for a 3-job sweep (a stand-in ``sbatch`` keeps it)."""
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "sbatch: error: no cluster here" >&2\nexit 1\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit checks that it is on a cluster
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "llmner.train", "-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                           "hydra.launcher.timeout_min=120", "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4",
                           "hydra.launcher.setup=[module load cuda]", "seed=1,2,3", f"data.path={tiny_conll}",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY_BUDGET],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode != 0 and "no cluster here" in proc.stderr  # submitted, then refused by the stand-in
    sbatch = script.read_text()
    for line in ("--partition=gpu", "--time=120", "--gpus-per-node=4", "--ntasks-per-node=4", "--cpus-per-task=8",
                 "--mem=64GB", "--array=0-2%3", "--nodes=1"):
        assert f"#SBATCH {line}\n" in sbatch, line
    assert "module load cuda\n" in sbatch and "submitit.core._submit" in sbatch  # array: 3 jobs (array_parallelism 16, capped at 3)


def test_slurm_sweep_runs_each_job_on_the_ranks_slurm_starts(tiny_conll, tmp_path):
    """``hydra/launcher=slurm`` end to end with SLURM's commands played by ``tests/fake_slurm.py``: a 2-job array,
    each job 2 tasks that Lightning takes for its DDP ranks (gloo on CPU), each job in its own folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    subprocess.run([sys.executable, str(Path(__file__).with_name("fake_slurm.py")), "install", str(bin_dir)], check=True)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "llmner.train", "-m", "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
                           "hydra.launcher.tasks_per_node=2", "trainer=ddp_sim", "seed=1,2", "data=conll2003",
                           f"data.path={tiny_conll}",
                           "trainer.max_steps=3", f"hydra.sweep.dir={sweep}", *TINY_BUDGET],
                          capture_output=True, text=True, timeout=600, env=env)
    logs = "\n".join(p.read_text() for p in sorted((sweep / ".submitit").rglob("*_log.*")))
    assert proc.returncode == 0, proc.stderr[-2000:] + logs[-3000:]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["train/steps"] == 3 and "test/f1" in metrics
        assert len((sweep / job / "test_predictions.conll").read_text().strip().split("\n\n")) == 40  # every sentence once
    assert logs.count("Job completed successfully") >= 4  # 2 jobs x 2 tasks
    assert "MEMBER: 2/2" in logs  # Lightning's process group: the second rank joined, started by (stand-in) srun
