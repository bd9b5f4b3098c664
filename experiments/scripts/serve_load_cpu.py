"""A bounded load test of ``python -m llmner.serve`` on loopback: p50/p95 latency and throughput.

Usage (from the repository root):
    python experiments/scripts/serve_load_cpu.py --ckpt CKPT_OR_ONNX_DIR [--data ../shared/data/conll2003] \
        [--clients 1,8,32] [--requests 200] [--batching 8,1]

For each ``max_batch_size`` in --batching the server is started (``OMP_NUM_THREADS=1`` in its worker),
then for each client count that many threads send --requests requests in all, one test sentence
each (the first sentences of the CoNLL-2003 test split, joined by spaces), and wait for each answer
before sending the next. Reported: median and 95th-percentile latency per request, and sentences
answered per second over the whole run.
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


def _start(ckpt: str, batch: int, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llmner.serve", f"ckpt_path={ckpt}", f"port={port}", f"max_batch_size={batch}",
           "batch_timeout=0.01", "max_texts=64", f"hydra.run.dir={log.parent}"]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", default="../shared/data/conll2003")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--batching", default="8,1")
    ap.add_argument("--log-dir", default="logs/serve_load")
    args = ap.parse_args()
    texts = [" ".join(s.tokens) for s in read_conll(find_split_file(Path(args.data), "test"))[: args.requests]]
    print("| max_batch_size | clients | p50 ms | p95 ms | sentences/s |")
    print("|---|---|---|---|---|")
    for batch in map(int, args.batching.split(",")):
        log = Path(args.log_dir) / f"batch{batch}" / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        port = _port()
        proc = _start(args.ckpt, batch, port, log)
        url = f"http://127.0.0.1:{port}/predict"
        try:
            _ask(url, texts[0])  # warm-up
            for clients in map(int, args.clients.split(",")):
                start = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    latencies = sorted(pool.map(lambda t: _ask(url, t), texts))
                wall = time.perf_counter() - start
                p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
                print(f"| {batch} | {clients} | {1000 * statistics.median(latencies):.0f} | {1000 * p95:.0f} | "
                      f"{len(texts) / wall:.1f} |", flush=True)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
