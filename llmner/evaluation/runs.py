"""A run folder's files other than its predictions: ``metrics.json``, results tables, TensorBoard curves.

A run folder is what ``llmner.train`` writes: ``metrics.json``, ``test_predictions.conll``
(``llmner.evaluation.predictions``) and, under Hydra, ``.hydra/overrides.yaml``. A results table
has one row per run: the columns ``system``, ``seed``, ``overrides``, ``output_dir``, then the
metrics (``val/f1``, ``test/f1_PER``, ...).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

ID_COLUMNS = ["system", "seed", "overrides", "output_dir"]


def write_metrics(path: str | Path, metrics: dict[str, float]) -> None:
    """All final figures of a run as one JSON object, keys sorted."""
    Path(path).write_text(json.dumps(dict(sorted(metrics.items())), indent=2) + "\n")


def read_run(output_dir: str | Path) -> dict:
    """``metrics.json`` of a run folder, plus its Hydra overrides when it has them."""
    output_dir = Path(output_dir)
    row = {"output_dir": str(output_dir)}
    overrides = output_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        import yaml  # Hydra's own dependency

        row["overrides"] = " ".join(yaml.safe_load(overrides.read_text()) or [])
    row |= json.loads((output_dir / "metrics.json").read_text())
    return row


def write_results(rows: list[dict], path: str | Path) -> pd.DataFrame:
    """One row per run, identity columns first, then metrics sorted by name."""
    df = pd.DataFrame(rows)
    first = [c for c in ID_COLUMNS if c in df]
    df = df[first + sorted(c for c in df.columns if c not in first)]
    df.to_csv(path, index=False)
    return df


def read_curves(dirs: list[str | Path], metric: str = "val/f1") -> pd.DataFrame:
    """Every logged value of ``metric`` of every run below ``dirs``, read from TensorBoard event files.

    A run is a folder holding ``tensorboard/events.out.tfevents.*`` (what ``llmner.train`` writes); a
    resumed run's several event files are read together. Columns:
    - ``run``: the run folder relative to the folder given (after that folder's name when several
      are given), or the folder's own name;
    - ``step``; ``seconds`` since the run's first event (validation included, and a resumed run's
      pause too); ``metric``'s name: the value.

    Raises:
        FileNotFoundError: a folder that does not exist, or no event file holding ``metric``.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for top in map(Path, dirs):
        if not top.is_dir():
            raise FileNotFoundError(f"{top}: no such folder")
        for board in sorted({f.parent for f in top.rglob("events.out.tfevents.*")}):
            run_dir = board.parent if board.name == "tensorboard" else board
            name = str(run_dir.relative_to(top)) if run_dir != top else top.name
            if len(dirs) > 1 and run_dir != top:
                name = f"{top.name}/{name}"  # runs of different folders stay apart
            events, starts = [], []
            for f in sorted(board.glob("events.out.tfevents.*")):
                acc = EventAccumulator(str(f), size_guidance={"scalars": 0})  # 0: keep every point
                acc.Reload()
                starts.append(acc.FirstEventTimestamp())
                if metric in acc.Tags()["scalars"]:
                    events += acc.Scalars(metric)
            rows += [{"run": name, "step": e.step, "seconds": e.wall_time - min(starts), metric: e.value} for e in events]
    if not rows:
        raise FileNotFoundError(f"no TensorBoard event file with {metric!r} below {', '.join(map(str, dirs))}")
    return pd.DataFrame(rows).sort_values(["run", "step"], kind="stable").reset_index(drop=True)
