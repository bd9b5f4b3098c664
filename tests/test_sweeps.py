"""Sweeps: an Optuna search through ``llmner.train -m`` and a plain multirun of the benchmark, each leaving its table."""

import subprocess
import sys

import pandas as pd
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
