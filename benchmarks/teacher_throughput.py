"""Requests per second of the teacher client against a loopback endpoint with a fixed latency.

The endpoint (`distill.teachers.loopback fixed`) runs in its own process and answers every
chat completion after exactly `--latency` seconds, so the ideal is concurrency / latency.
The client is the whole teach path: the labelling engine with validation, ledger and the
SQLite cache (every reply committed), over aiohttp.

    python benchmarks/teacher_throughput.py [--latency 0.2] [--seconds 4] [--concurrency 1 16 64]
                                            [--only single|endpoints] [--slots 8]

Target: at least 85% of ideal at concurrency 64.

`endpoints` (teacher.base_url as a list, distill/teachers/endpoints.py): each endpoint is a
replica with `--slots` batch slots (the rest queue, like vLLM's max_num_seqs), so one
replica tops out at slots / latency answers a second whatever the client's concurrency.
At concurrency 64, three replicas against one: target at least 2.8x the throughput. Then
the three again with one replica's process killed (SIGKILL) half-way: the run must finish
with every input labelled exactly once, and the ledger and cache must count each once.
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


def start_endpoint(latency: float, slots: int | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "distill.teachers.loopback", "fixed", "--port", str(port),
                             "--latency", str(latency), *(["--slots", str(slots)] if slots else [])],
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # "serving ..." once it listens
    url = f"http://127.0.0.1:{port}/v1"
    httpx.post(url + "/chat/completions", json={}, timeout=10)  # warm
    return proc, url


async def measure(url: str | list[str], concurrency: int, n: int, cache_dir: Path, kill=None, name: str = "") -> float:
    """Requests per second labelling `n` rows; `kill(labeller)` runs alongside when given. Stops
    the benchmark unless every row was labelled and sent exactly once, and the ledger, the
    per-endpoint figures and the cache all count `n`."""
    cfg = OpenAITeacher(kind="openai", base_url=url, model="gpt-4o-mini", concurrency=concurrency, max_tokens=16,
                        endpoint_cooldown_s=2.0)
    backend = OpenAIBackend(cfg, TASK.json_schema(), TASK.name)
    cache = ResponseCache(cache_dir / f"c{concurrency}{name}.sqlite")
    labeller = Labeller(TASK, backend, Ledger(price_for(cfg.model)), cache=cache, max_tokens=16)
    rows = [{"id": str(i), "text": f"review number {i} of run {concurrency}{name}"} for i in range(n)]
    killer = asyncio.ensure_future(kill(labeller)) if kill else None
    start = time.perf_counter()
    results = await asyncio.gather(*(labeller.label(r) for r in rows))
    elapsed = time.perf_counter() - start
    if killer is not None:
        await killer
    await backend.aclose()
    ok = sum(r[0] is not None for r in results)
    per = labeller.ledger.endpoints
    counts = [ok, labeller.sent, labeller.ledger.requests, len(cache), cache.ledger_totals()["requests"]]
    if per:
        counts.append(sum(f.requests for f in per.values()))
        for endpoint, f in per.items():
            print(f"    {endpoint}: {f.requests} answered, {f.errors} errors, taken out {f.taken_out}x, "
                  f"{f.prompt_tokens + f.completion_tokens} tokens, {f.seconds:.1f} s in requests")
    cache.close()
    if any(c != n for c in counts):
        raise SystemExit(f"benchmark broken: of {n} rows: labelled, sent, ledger, cache entries, cache ledger, "
                         f"per-endpoint sum = {counts}")
    return n / elapsed


def endpoints_case(args, tmp: Path) -> dict:
    """One replica vs three at concurrency 64, then three with one killed half-way."""
    c, k = 64, 3
    started = [start_endpoint(args.latency, args.slots) for _ in range(k + 1)]
    procs, urls = [p for p, _ in started], [u for _, u in started]
    one_ideal, many_ideal = min(c, args.slots) / args.latency, min(c, k * args.slots) / args.latency
    figures: dict = {"latency_s": args.latency, "slots_per_endpoint": args.slots, "concurrency": c}
    try:
        n1 = int(one_ideal * args.seconds)
        one = asyncio.run(measure(urls[0], c, n1, tmp, name="one"))
        print(f"  1 endpoint:  {n1:>5} requests {one:>7.1f} req/s (ideal {one_ideal:.0f})", flush=True)
        n3 = int(many_ideal * args.seconds)
        many = asyncio.run(measure(urls[:k], c, n3, tmp, name="three"))
        print(f"  {k} endpoints: {n3:>5} requests {many:>7.1f} req/s (ideal {many_ideal:.0f})", flush=True)
        ratio = many / one
        print(f"  throughput ratio {ratio:.2f}x (target >= 2.8x)", flush=True)

        async def kill_half_way(labeller):
            while labeller.sent < n3 // 2:
                await asyncio.sleep(0.01)
            procs[k].kill()  # the replica's process dies: open connections reset, new ones refused
            print(f"  killed {urls[k]} after {labeller.sent} of {n3} answers", flush=True)

        killed = asyncio.run(measure(urls[1:], c, n3, tmp, kill=kill_half_way, name="killed"))
        print(f"  {k} endpoints, one killed half-way: {n3} requests, every input labelled once, "
              f"{killed:.1f} req/s", flush=True)
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    figures.update(one_rps=round(one, 2), three_rps=round(many, 2), ratio=round(ratio, 3), killed_rps=round(killed, 2),
                   requests=n3)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--seconds", type=float, default=4.0, help="ideal duration of each measurement")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--only", choices=["single", "endpoints"], help="run one case (default: both)")
    # 8 slots: three replicas' ideal (120 req/s) stays well under what one client process sustains on a
    # shared 2-core machine, so the ratio measures the spreading, not the client's own CPU
    p.add_argument("--slots", type=int, default=8, help="endpoints case: batch slots of each replica")
    args = p.parse_args(argv)
    code, result = 0, {}
    if args.only != "endpoints":
        result["single"] = figures = single_case(args)
        last = figures[-1]
        if last["concurrency"] == 64 and last["fraction_of_ideal"] < 0.85:
            print("below the target of 85% of ideal at concurrency 64")
            code = 1
    if args.only != "single":
        with tempfile.TemporaryDirectory() as tmp:
            print(f"endpoints: replicas of {args.slots} slots, {args.latency}s per answer, concurrency 64")
            result["endpoints"] = ends = endpoints_case(args, Path(tmp))
        if ends["ratio"] < 2.8:
            print("below the target of 2.8x with three endpoints")
            code = 1
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return code


def single_case(args) -> list[dict]:
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
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
