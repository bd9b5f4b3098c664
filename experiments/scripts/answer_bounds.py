"""The longest list and the longest value in the training answers of the crime_json CPU run: bounds for
``llmner.export ... gguf_max_items=N gguf_max_chars=M`` (experiments/gguf_llamacpp_cpu.md).

    python experiments/scripts/answer_bounds.py [--num-train 120]   # prints: N M, then the counts
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-train", type=int, default=120)
    args = p.parse_args()
    from hydra.utils import instantiate
    from omegaconf import open_dict

    from llmner.benchmark import compose_run
    from llmner.data.chat import sentence_to_example

    cfg = compose_run(["experiment=crime_json", "backbone=smollm2_135m", "backbone.load_in_4bit=false",
                       f"data.corpus.num_train={args.num_train}", "data.corpus.num_validation=4", "trainer.accelerator=cpu"])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = tempfile.mkdtemp(prefix="llmner-bounds-")
    dm = instantiate(cfg.data)
    answers = [sentence_to_example(s, i).answers for i, s in enumerate(dm.sentences["train"])]
    items = Counter(len(v) for a in answers for v in a.values())
    chars = [len(str(x)) for a in answers for v in a.values() for x in v]
    print(max(items), max(chars))
    print(json.dumps({"reports": len(answers), "values_a_list": dict(sorted(items.items())),
                      "longest_values": sorted(chars)[-5:]}))


if __name__ == "__main__":
    main()
