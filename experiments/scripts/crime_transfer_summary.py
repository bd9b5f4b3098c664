"""Tables of experiments/crime_transfer_cpu.md from experiments/figures/crime_transfer_cpu/*.json.

    python experiments/scripts/crime_transfer_summary.py [FIG_DIR]

Each run left ``SYSTEM_sSEED_train.json`` (the training run's metrics.json: ``val/f1`` on the 200 generated
validation reports, ``test/f1`` on the 100 classic generated test reports) and ``SYSTEM_sSEED_hand.json``
(the 22 hand-written reports). Prints the headline table (mean ± sd over seeds) and hand-written F1 per type.
A run of the mix with the developer-written reports (system ``written``) is scored per corpus: its val F1 column
is ``val/generated/f1`` (the same 200 reports), and ``written val`` is ``val/written/f1`` (their validation split).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

TYPES = ("Crime_Date", "Crime_Status", "Crime_Summary", "Crime_Time", "Crime_Type", "Evidence_Type", "Location",
         "Officer_BadgeNumber", "Officer_Name", "Suspect_Description", "Victim_Age", "Victim_CEO", "Victim_Email",
         "Victim_Manager", "Victim_Name", "Victim_Owner", "Witness_Name")
# copied from the earlier transfer runs (conf/experiment/crime_from_conll_cpu.yaml's figures): the same training,
# but validated on the 100 classic validation reports only and timed with 2 threads on a busier machine
PREVIOUS = {("old_default", 42), ("transfer", 42)}
ORDER = ("old_default", "varied", "right", "varied_right", "transfer", "varied_transfer")


def fmt(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(fig: Path) -> None:
    runs: dict[str, dict[int, dict[str, dict]]] = defaultdict(dict)
    for path in sorted(fig.glob("*_s*_*.json")):
        m = re.fullmatch(r"(.+)_s(\d+)_(train|hand)\.json", path.name)
        if m:
            runs[m.group(1)].setdefault(int(m.group(2)), {})[m.group(3)] = json.loads(path.read_text())
    systems = [s for s in ORDER if s in runs] + sorted(set(runs) - set(ORDER))
    print("| system | seeds | val F1 (200 generated) | written val F1 | generated test F1 (100 classic) "
          "| hand-written F1 (22) | hand P / R | train s | trunk fill s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in systems:
        seeds = sorted(runs[name])
        col = defaultdict(list)
        for seed in seeds:
            train, hand = runs[name][seed].get("train", {}), runs[name][seed].get("hand", {})
            generated = "val/generated/f1" if "val/generated/f1" in train else "val/f1"
            for key, src, val in (("val", train, generated), ("written", train, "val/written/f1"),
                                  ("test", train, "test/f1"), ("hand", hand, "test/f1"),
                                  ("p", hand, "test/precision"), ("r", hand, "test/recall"),
                                  ("time", train, "train/seconds")):
                if val in src and not (key in ("val", "time") and (name, seed) in PREVIOUS):
                    col[key].append(src[val])
            fill = sum(v for k, v in train.items() if k.startswith("cache/") and k.endswith("seconds"))
            if fill:
                col["fill"].append(fill)
        shown = ",".join(f"{s}*" if (name, s) in PREVIOUS else str(s) for s in seeds)
        print(f"| {name} | {shown} | {fmt(col['val'])} | {fmt(col['written'])} | {fmt(col['test'])} | **{fmt(col['hand'])}** "
              f"| {fmt(col['p'], 2)} / {fmt(col['r'], 2)} | {fmt(col['time'], 0)} | {fmt(col['fill'], 0)} |")
    print()
    print("\\* copied from the earlier transfer runs: same training; its val F1 (100 classic reports) and time are left out.")
    print()
    print("Hand-written entity F1 per type (mean over the seeds above):")
    print()
    print("| type | " + " | ".join(systems) + " |")
    print("|---|" + "---|" * len(systems))
    for t in TYPES:
        cells = []
        for name in systems:
            values = [r["hand"][f"test/f1_{t}"] for r in runs[name].values() if f"test/f1_{t}" in r.get("hand", {})]
            cells.append(f"{statistics.mean(values):.3f}" if values else "-")
        print(f"| {t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "experiments/figures/crime_transfer_cpu"))
