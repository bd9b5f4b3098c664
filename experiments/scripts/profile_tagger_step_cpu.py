"""Where a training step of a cached tag head goes on this CPU (torch profiler), with and without LoRA dropout.

    python experiments/scripts/profile_tagger_step_cpu.py [--steps 10] [override ...]

Builds ``experiment=crime_crf_cpu`` (plus the Hydra ``override``s, e.g. ``backbone.layer=12
backbone.lora_layers=6``) on a few reports (60 generated, 30 written), fills the trunk cache for
them, then runs the same ``--steps`` batches of training (forward, loss, backward, AdamW) once per
``backbone.lora_dropout`` of ``--dropouts``, after two warm-up steps each, and prints the mean step
time. One profiled run of 4 steps per setting prints the top operators by self CPU time; the first
setting's fill is profiled too (tokens a second, top operators). Set ``OMP_NUM_THREADS`` as the runs
you compare with (``make train``: 2 threads on 2 cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def build(overrides: list[str]):
    """The model and data module of ``experiment=crime_crf_cpu`` with ``overrides``, as ``llmner.train`` builds them."""
    import tempfile

    from omegaconf import open_dict

    from llmner.benchmark import compose_run
    from llmner.builders import build_datamodule, build_model

    cfg = compose_run(["experiment=crime_crf_cpu", "data.corpora.generated.data.max_train_samples=60",
                       "data.corpora.written.data.max_train_samples=30", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = tempfile.mkdtemp(prefix="llmner-profile-")
    dm = build_datamodule(cfg)
    model = build_model(cfg, dm.tags, "cpu")
    dm.encoder = model.encoder
    dm.setup("fit")
    return model, dm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--dropouts", type=float, nargs="+", default=[0.05, 0.0])
    args, overrides = p.parse_known_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    for k, dropout in enumerate(args.dropouts):
        torch.manual_seed(0)
        model, dm = build([*overrides, f"backbone.lora_dropout={dropout}"])
        if getattr(model.backbone, "trunk", None) is not None:
            windows = [w.input_ids for w in dm.items["train"]]
            with profile(activities=[ProfilerActivity.CPU]) if k == 0 else nullcontext() as prof:
                start = time.perf_counter()
                model.backbone.fill(windows)
                seconds = time.perf_counter() - start
            if k == 0:
                tokens = sum(map(len, windows))
                print(f"fill: {len(windows)} windows, {tokens} tokens in {seconds:.1f} s ({tokens / seconds:.0f} tokens/s)")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=4))
        batches = [b for _, b in zip(range(args.steps + 2), dm.train_dataloader())]
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-3)
        model.train()

        def step(batch: dict) -> None:
            loss = model.loss(model(batch), batch["labels"], batch["word_mask"], model.head)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()

        for b in batches[:2]:  # warm-up
            step(b)
        start = time.perf_counter()
        for b in batches[2:]:
            step(b)
        mean = (time.perf_counter() - start) / len(batches[2:])
        shapes = [tuple(b["input_ids"].shape) for b in batches[2:]]
        print(f"lora_dropout={dropout}: {mean:.3f} s a step (mean of {len(shapes)}; batches {shapes})")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for b in batches[2:6]:
                step(b)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
