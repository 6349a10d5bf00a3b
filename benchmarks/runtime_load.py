"""A minute of load on a served bundle over loopback: zero failed requests below the queue
limit and no memory growth after warm-up. Usage:

    python benchmarks/runtime_load.py BUNDLE [--seconds 60] [--clients 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_runtime.server import create_app  # noqa: E402
from tests.edge_runtime.conftest import LiveServer  # noqa: E402
from edge_runtime.server_settings import ServerSettings


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--max-queue", type=int, default=4)
    ap.add_argument("--json")
    a = ap.parse_args()
    app = create_app(a.bundle, ServerSettings(max_queue=a.max_queue))
    task = app.state.bundle.task
    proc = psutil.Process()
    with LiveServer(app) as live:
        url = f"{live.url}/v1/tasks/{task.name}"
        for i in range(4):
            httpx.post(url, json={"input": f"warm up {i} " * (5 * i + 1)}, timeout=300)
        stop, lat, errors, rss = time.time() + a.seconds, [], [], []

        def client(i):
            with httpx.Client(timeout=300) as c:
                n = 0
                while time.time() < stop:
                    t = time.perf_counter()
                    try:
                        r = c.post(url, json={"input": f"request {i}-{n}: total 12.50"})
                        if r.status_code != 200:
                            errors.append(f"HTTP {r.status_code}: {r.text[:100]}")
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))
                    lat.append(time.perf_counter() - t)
                    rss.append(proc.memory_info().rss)
                    n += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.clients)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    half = len(rss) // 2
    report = {"seconds": a.seconds, "clients": a.clients, "requests": len(lat), "failed": len(errors),
              "p50_s": round(statistics.median(lat), 3), "p95_s": round(sorted(lat)[int(0.95 * (len(lat) - 1))], 3),
              "rss_growth_mib": round((max(rss[half:]) - max(rss[:half])) / 2**20, 2), "errors": errors[:5]}
    print(json.dumps(report, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=2))
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
