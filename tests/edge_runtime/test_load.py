"""Bounded load on loopback: concurrent task requests below the queue limit for ~15 s,
zero failures and no memory growth (benchmarks/runtime_load.py holds it for a minute)."""

from __future__ import annotations

import threading
import time

import httpx
import psutil

AUTH = {"Authorization": "Bearer sekret"}


def test_load_holds_without_failures_or_memory_growth(sentiment_server):
    url = sentiment_server.url + "/v1/tasks/sentiment"
    proc = psutil.Process()
    for i in range(4):  # steady state first: buffers and caches touched once
        httpx.post(url, json={"input": f"warm up {i} " * (i * 5 + 1)}, headers=AUTH, timeout=120)
    stop = time.time() + 15
    samples: list[int] = []
    results: list[int] = []
    errors: list[str] = []

    def client(i: int):
        with httpx.Client(timeout=120, headers=AUTH) as c:
            n = 0
            while time.time() < stop:
                try:
                    r = c.post(url, json={"input": f"review {i}-{n}: it was {'good' if n % 2 else 'bad'}"})
                    results.append(r.status_code)
                    if r.status_code != 200 or r.json()["answer"] is None:
                        errors.append(r.text[:200])
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                n += 1
                samples.append(proc.memory_info().rss)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]  # below the queue limit of 4
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    half = len(samples) // 2
    growth = max(samples[half:]) - max(samples[:half])  # growth after the first half, not the first touch
    assert not errors, errors[:3]
    assert len(results) >= 6
    assert growth < 40 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over {len(results)} requests"
