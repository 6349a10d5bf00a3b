"""Requests per second of the teacher client against a loopback endpoint with a fixed latency.

The endpoint (`distill.teachers.loopback fixed`) runs in its own process and answers every
chat completion after exactly `--latency` seconds, so the ideal is concurrency / latency.
The client is the whole teach path: the labelling engine with validation, ledger and the
SQLite cache (every reply committed), over httpx.

    python benchmarks/teacher_throughput.py [--latency 0.2] [--seconds 4] [--concurrency 1 16 64]

Target: at least 85% of ideal at concurrency 64.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from distill.recipe import OpenAITeacher
from distill.teachers.cache import ResponseCache
from distill.teachers.label import Labeller
from distill.teachers.ledger import Ledger
from distill.teachers.openai_teacher import OpenAIBackend
from distill.teachers.prices import price_for
from edge_runtime.task import TaskSpec

TASK = TaskSpec(name="sentiment", kind="classification", instructions="Classify the review.",
                labels=["positive", "negative"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_endpoint(latency: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "distill.teachers.loopback", "fixed", "--port", str(port),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # "serving ..." once it listens
    url = f"http://127.0.0.1:{port}/v1"
    httpx.post(url + "/chat/completions", json={}, timeout=10)  # warm
    return proc, url


async def measure(url: str, concurrency: int, n: int, cache_dir: Path) -> float:
    cfg = OpenAITeacher(kind="openai", base_url=url, model="gpt-4o-mini", concurrency=concurrency, max_tokens=16)
    backend = OpenAIBackend(cfg, TASK.json_schema(), TASK.name)
    cache = ResponseCache(cache_dir / f"c{concurrency}.sqlite")
    labeller = Labeller(TASK, backend, Ledger(price_for(cfg.model)), cache=cache, max_tokens=16)
    rows = [{"id": str(i), "text": f"review number {i} of run {concurrency}"} for i in range(n)]
    start = time.perf_counter()
    results = await asyncio.gather(*(labeller.label(r) for r in rows))
    elapsed = time.perf_counter() - start
    await backend.aclose()
    cache.close()
    ok = sum(r[0] is not None for r in results)
    if ok != n or labeller.sent != n:
        raise SystemExit(f"benchmark broken: {ok}/{n} labelled, {labeller.sent} sent")
    return n / elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--seconds", type=float, default=4.0, help="ideal duration of each measurement")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    proc, url = start_endpoint(args.latency)
    figures = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{'concurrency':>11} {'requests':>8} {'req/s':>8} {'ideal':>8} {'of ideal':>8}")
            for c in args.concurrency:
                ideal = c / args.latency
                n = max(c, int(ideal * args.seconds))
                rps = asyncio.run(measure(url, c, n, Path(tmp)))
                figures.append({"concurrency": c, "requests": n, "rps": round(rps, 2), "ideal_rps": ideal,
                                "fraction_of_ideal": round(rps / ideal, 4)})
                print(f"{c:>11} {n:>8} {rps:>8.1f} {ideal:>8.1f} {rps / ideal:>8.1%}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    last = figures[-1]
    if last["concurrency"] == 64 and last["fraction_of_ideal"] < 0.85:
        print("below the target of 85% of ideal at concurrency 64")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
