"""Benchmark systems on the same data, step budget and seeds: ``python -m llmner.benchmark [key=value ...]``.

Each (system, seed) is the real train config (``conf/train.yaml``) composed with the benchmark's
overrides and the system's own, trained in this process by ``llmner.train.train`` into
``<run dir>/<system>/seed<k>/``. The run dir then holds ``results.csv`` (one row per run),
``summary.md``/``summary.csv`` (per system), ``comparisons.csv`` (paired tests) and two plots;
``llmner.evaluation.tables`` makes them. A run whose folder already holds ``benchmark_metrics.json`` is not
trained again: rerun with the same ``hydra.run.dir`` to finish an interrupted benchmark.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path

import hydra
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from llmner import cli
from llmner.builders import count_parameters
from llmner.errors import ConfigError
from llmner.evaluation.analyze.benchmark import analyze_benchmark
from llmner.evaluation.runs import write_results
from llmner.evaluation.tables import write_report
from llmner.guards import check_selection
from llmner.memory import peak_memory_mb, reset_peak_memory
from llmner.train import train

log = logging.getLogger(__name__)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def compose_run(overrides: list[str]) -> DictConfig:
    """The train config with ``overrides``, as ``python -m llmner.train <overrides>`` would compose it.

    Inside a running Hydra app (``python -m llmner.benchmark``) the global Hydra already knows
    ``conf/``; called from plain Python (tests, notebooks) it is initialized for the call.
    """
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="train", overrides=overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def run_overrides(cfg: DictConfig, system: DictConfig, seed: int) -> list[str]:
    """Benchmark protocol, data, budget and seed, the user's extras, then the system's own overrides; later wins."""
    data = [f"data.path={cfg.data_path}"] if cfg.get("data_path") else []
    budget = [f"trainer.max_steps={cfg.max_steps}", f"seed={seed}"]
    overrides = [*cfg.train_overrides, *data, *budget, *cfg.extra_overrides, *system.overrides]
    # Later wins (Hydra refuses two values for one config group, e.g. experiment=null and experiment=conll_crf).
    last = {o.split("=", 1)[0].lstrip("+~"): i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[o.split("=", 1)[0].lstrip("+~")] == i]


def run_one(cfg: DictConfig, system: DictConfig, seed: int, output_dir: Path) -> dict:
    """Train and test one (system, seed) in ``output_dir``; its row of ``results.csv``."""
    done = output_dir / "benchmark_metrics.json"
    row = {"system": system.name, "seed": seed, "overrides": " ".join(run_overrides(cfg, system, seed)),
           "output_dir": str(output_dir)}
    if done.exists():
        log.info("%s: already done, not trained again", output_dir)
        return row | json.loads(done.read_text())
    run_cfg = compose_run(run_overrides(cfg, system, seed))
    check_selection(run_cfg, f"system {system.name}")
    with open_dict(run_cfg):
        run_cfg.paths.output_dir = str(output_dir)
    reset_peak_memory()
    metrics, objects = train(run_cfg)
    n_test = len(objects["datamodule"].sentences["test"])
    n_words = sum(len(s.tokens) for s in objects["datamodule"].sentences["test"])
    metrics |= {
        "params/trainable": count_parameters(objects["model"])[0],
        "memory/peak_mb": peak_memory_mb(),
        "test/sentences": n_test,
        "test/sentences_per_second": n_test / metrics["test/seconds"],
        "test/words_per_second": n_words / metrics["test/seconds"],
    }
    del objects
    gc.collect()
    done.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return row | metrics


def benchmark(cfg: DictConfig) -> pd.DataFrame:
    """Every system x seed, then the tables, plots and tests in ``cfg.paths.output_dir``.

    Returns:
        The per-system summary (``summary.csv``).
    """
    check_selection(cfg, "benchmark config")
    names = [s.name for s in cfg.systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"system names must be unique, got {names}")
    for system in cfg.systems:  # fail on a bad override before hours of training, not after
        if any(o.split("=", 1)[0].lstrip("+~") in ("trainer.max_steps", "seed") for o in system.overrides):
            raise ConfigError(f"system {system.name}: the budget and seeds are the benchmark's (max_steps=, seeds=), "
                             f"not a system's; got overrides {list(system.overrides)}")
        check_selection(compose_run(run_overrides(cfg, system, cfg.seeds[0])), f"system {system.name}")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, total, start = [], len(cfg.systems) * len(cfg.seeds), time.perf_counter()
    for seed in cfg.seeds:  # seed-major: a benchmark cut short still has every system
        for system in cfg.systems:
            log.info("=== run %d/%d: %s, seed %d", len(rows) + 1, total, system.name, seed)
            rows.append(run_one(cfg, system, seed, out / system.name / f"seed{seed}"))
            elapsed = time.perf_counter() - start
            log.info("=== %s seed %d: test/f1=%.4f; %d/%d runs in %.0f s", system.name, seed,
                     rows[-1]["test/f1"], len(rows), total, elapsed)
            write_results(rows, out / "results.csv")  # after every run: partial results survive
    results = write_results(rows, out / "results.csv")
    summary = write_report(results, out, samples=cfg.bootstrap_samples, seed=cfg.bootstrap_seed)
    log.info("\n%s", (out / "summary.md").read_text())
    analyze_benchmark(out, summary, seed=cfg.seeds[0], samples=cfg.bootstrap_samples)  # analysis/<best>_vs_<other>/
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark.yaml")
def main(cfg: DictConfig) -> float | None:
    summary = cli.run("benchmark", lambda: benchmark(cfg))
    return float(summary["val_f1"].max())  # for sweepers: the best system's mean val/f1


if __name__ == "__main__":
    main()
