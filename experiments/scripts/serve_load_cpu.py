"""A bounded load test of ``python -m llmner.serve`` on loopback: p50/p95 latency and throughput.

Usage (from the repository root):
    python experiments/scripts/serve_load_cpu.py --ckpt CKPT_OR_ONNX_DIR [--data ../shared/data/conll2003] \
        [--clients 1,8,32] [--requests 200] [--configs 1:0.01:waiting,8:0.01:litserve,8:0.01:waiting,8:0:waiting] \
        [--rounds 2] [--merged]

Each server configuration (``max_batch_size:batch_timeout:batch_loop``, see ``conf/serve.yaml``) is
started in turn (``OMP_NUM_THREADS=1`` in its processes), ``--rounds`` times in alternating order;
its processes' CPU time over 5 idle seconds is reported, then for each client count that many
threads send --requests requests in all, one test sentence each (the first sentences of the
CoNLL-2003 test split, joined by spaces), and wait for each answer before sending the next.
Reported per round: median and 95th-percentile latency per request, and sentences answered per
second over the whole run. ``--merged`` first times the model itself in this process: ``predict``
on groups of 8 sentences against one sentence per call (what batching changes in the model call).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmner.data.conll import find_split_file, read_conll  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(group: int) -> float:
    """User + system CPU seconds of the processes in process group ``group`` (from /proc)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime are fields 14 and 15 of stat
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _start(ckpt: str, config: str, port: int, log: Path) -> subprocess.Popen:
    batch, timeout, loop = config.split(":")
    cmd = [sys.executable, "-m", "llmner.serve", f"ckpt_path={ckpt}", f"port={port}", f"max_batch_size={batch}",
           f"batch_timeout={timeout}", f"batch_loop={loop}", "max_texts=64", f"hydra.run.dir={log.parent}"]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.read() == b"ok":
                    return proc
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"server not ready: {log.read_text()[-2000:]}")


def _ask(url: str, text: str) -> float:
    body = json.dumps({"texts": [text]}).encode()
    start = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        json.loads(r.read())
    return time.perf_counter() - start


def merged_check(ckpt: str, texts: list[str], group: int = 8, rounds: int = 3) -> None:
    """Seconds per sentence of ``predict`` on ``group`` sentences per call and on one per call."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import llmner

    model = llmner.load(ckpt)
    model.predict(texts[:group])
    runs: dict[str, list[float]] = {"one per call": [], f"{group} per call": []}
    for _ in range(rounds):
        start = time.perf_counter()
        for t in texts:
            model.predict([t])
        runs["one per call"].append((time.perf_counter() - start) / len(texts))
        start = time.perf_counter()
        for i in range(0, len(texts), group):
            model.predict(texts[i : i + group])
        runs[f"{group} per call"].append((time.perf_counter() - start) / len(texts))
    for name, r in runs.items():
        print(f"predict, {name}: {1000 * statistics.median(r):.2f} ms per sentence (median of {rounds})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", default="../shared/data/conll2003")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--configs", default="1:0.01:waiting,8:0.01:litserve,8:0.01:waiting,8:0:waiting")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--merged", action="store_true")
    ap.add_argument("--log-dir", default="logs/serve_load")
    args = ap.parse_args()
    texts = [" ".join(s.tokens) for s in read_conll(find_split_file(Path(args.data), "test"))[: args.requests]]
    if args.merged:
        merged_check(args.ckpt, texts)
    print("| round | max_batch_size | batch_timeout | loop | idle CPU % | clients | p50 ms | p95 ms | sentences/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    configs = args.configs.split(",")
    for r in range(args.rounds):
        for config in configs if r % 2 == 0 else configs[::-1]:
            log = Path(args.log_dir) / config.replace(":", "_") / "server.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            port = _port()
            proc = _start(args.ckpt, config, port, log)
            url = f"http://127.0.0.1:{port}/predict"
            try:
                _ask(url, texts[0])  # warm-up
                cpu = _cpu_seconds(proc.pid)
                time.sleep(5)
                idle = 100 * (_cpu_seconds(proc.pid) - cpu) / 5
                for clients in map(int, args.clients.split(",")):
                    start = time.perf_counter()
                    with ThreadPoolExecutor(clients) as pool:
                        latencies = sorted(pool.map(lambda t: _ask(url, t), texts))
                    wall = time.perf_counter() - start
                    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
                    print(f"| {r + 1} | {' | '.join(config.split(':'))} | {idle:.0f} | {clients} | "
                          f"{1000 * statistics.median(latencies):.0f} | {1000 * p95:.0f} | {len(texts) / wall:.1f} |",
                          flush=True)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
