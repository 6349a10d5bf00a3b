"""Several teacher endpoints (distill/teachers/endpoints.py) against real loopback servers: one
killed mid-run, one back after its cooldown, weights, all down, and the recipe's checks."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from distill.recipe import RecipeError
from distill.teachers import run_teach
from distill.teachers.cache import ResponseCache
from distill.teachers.loopback import FixedLatencyServer
from distill.teachers.openai_teacher import OpenAIBackend, TeacherFatal



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def teacher(urls, **kw):
    return {"kind": "openai", "base_url": urls, "model": "m", "max_tokens": 16, "price_input_per_m": 100.0,
            "price_output_per_m": 200.0, "endpoint_cooldown_s": 0.3, "backoff_s": 0.05, **kw}


def kill_after(server, requests: int) -> threading.Thread:
    """Stop `server` (its listening socket and every open connection) once it has answered `requests`."""
    def watch():
        while server.requests < requests:
            time.sleep(0.005)
        server.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_one_endpoint_killed_mid_run_every_input_labelled_once_and_the_ledger_exact(make_recipe, tmp_path):
    servers = [FixedLatencyServer(0.03).start() for _ in range(3)]
    try:
        recipe, rows, _ = make_recipe(teacher([s.url for s in servers], concurrency=9), texts=120)
        watcher = kill_after(servers[1], 8)
        summary = run_teach(recipe, rows, tmp_path / "run" / "teach")
        watcher.join(5)
    finally:
        for s in (servers[0], servers[2]):
            s.stop()
    assert summary["labelled"] == 120 and summary["failed"] == 0
    assert ids(tmp_path / "run/teach/labelled.jsonl") == [r["id"] for r in rows]
    per = summary["endpoints"]
    dead = per[servers[1].url]
    assert dead["taken_out"] >= 1 and dead["errors"] >= 1 and dead["requests"] == servers[1].requests
    assert [per[s.url]["requests"] for s in servers] == [s.requests for s in servers]
    # exact: 120 answers paid once each, 10 + 5 tokens at $100/$200 per million, wherever they came from
    assert summary["requests"] == sum(s.requests for s in servers) == sum(f["requests"] for f in per.values()) == 120
    assert summary["prompt_tokens"] == sum(f["prompt_tokens"] for f in per.values()) == 1200
    assert summary["completion_tokens"] == sum(f["completion_tokens"] for f in per.values()) == 600
    assert summary["cost_usd"] == pytest.approx(120 * (10 * 100 + 5 * 200) / 1e6)
    cache = ResponseCache(tmp_path / "run/teacher-cache.sqlite")
    assert len(cache) == 120 and cache.ledger_totals()["requests"] == 120
    cache.close()


def test_cache_and_ledger_are_those_of_one_endpoint(make_recipe, tmp_path):
    """The first endpoint names the cache: a run on one endpoint and one on three store the same
    keys and the same totals, and adding replicas to a recipe re-pays nothing."""
    with FixedLatencyServer(0.01) as a, FixedLatencyServer(0.01) as b, FixedLatencyServer(0.01) as c:
        one, rows, _ = make_recipe(teacher(a.url, concurrency=6), texts=30)
        single = run_teach(one, rows, tmp_path / "one" / "teach")
        three, _, _ = make_recipe(teacher([a.url, b.url, c.url], concurrency=6), texts=30)
        many = run_teach(three, rows, tmp_path / "three" / "teach")
        assert b.requests > 0 and c.requests > 0  # the work really was shared
        again = run_teach(three, rows, tmp_path / "one" / "teach")  # the single endpoint's run directory
        assert again["requests"] == 0 and again["from_cache"] == 30
    caches = [ResponseCache(tmp_path / d / "teacher-cache.sqlite") for d in ("one", "three")]
    keys = [{k for (k,) in sqlite3.connect(tmp_path / d / "teacher-cache.sqlite").execute("SELECT key FROM responses")}
            for d in ("one", "three")]
    assert keys[0] == keys[1] and len(keys[0]) == 30
    assert caches[0].ledger_totals() == caches[1].ledger_totals()
    for k in ("requests", "prompt_tokens", "completion_tokens", "cost_usd"):
        assert single[k] == many[k], k
    for c in caches:
        c.close()


def test_load_follows_the_weights(make_recipe, tmp_path):
    with FixedLatencyServer(0.02) as heavy, FixedLatencyServer(0.02) as light:
        recipe, rows, _ = make_recipe(teacher([{"url": heavy.url, "weight": 3}, light.url], concurrency=8), texts=200)
        summary = run_teach(recipe, rows, tmp_path / "teach")
    assert summary["labelled"] == 200
    assert 2.4 <= heavy.requests / light.requests <= 3.6, (heavy.requests, light.requests)


def test_max_concurrency_caps_one_endpoint(make_recipe, tmp_path):
    with FixedLatencyServer(0.02) as small, FixedLatencyServer(0.02) as big:
        recipe, rows, _ = make_recipe(teacher([{"url": small.url, "max_concurrency": 1}, big.url], concurrency=8),
                                      texts=80)
        summary = run_teach(recipe, rows, tmp_path / "teach")
    assert summary["labelled"] == 80 and 0 < small.requests <= 80 / 8 + 2 < big.requests


def test_an_endpoint_at_its_rpm_gets_nothing_more_and_holds_nothing_up(make_recipe, tmp_path):
    with FixedLatencyServer(0.02) as limited, FixedLatencyServer(0.02) as free:
        recipe, rows, _ = make_recipe(teacher([{"url": limited.url, "rpm": 5}, free.url], concurrency=4), texts=60)
        started = time.monotonic()
        summary = run_teach(recipe, rows, tmp_path / "teach")
        took = time.monotonic() - started
    assert summary["labelled"] == 60 and limited.requests == 5 and free.requests == 55
    assert took < 20  # nothing waited for the limited endpoint's 60 s window


def test_an_endpoint_back_after_its_cooldown_gets_work_again(make_recipe, tmp_path):
    port = free_port()
    late = FixedLatencyServer(0.02, port=port)  # not listening yet: connections are refused
    with FixedLatencyServer(0.02) as up:
        recipe, rows, _ = make_recipe(teacher([f"http://127.0.0.1:{port}/v1", up.url], concurrency=4), texts=300)
        threading.Timer(0.5, late.start).start()
        try:
            summary = run_teach(recipe, rows, tmp_path / "teach")
        finally:
            late.stop()
    figures = summary["endpoints"][late.url]
    assert figures["errors"] >= 1 and figures["taken_out"] >= 1  # refused at first: taken out, probed later
    assert late.requests > 20 and figures["requests"] == late.requests  # and back in the rotation
    assert summary["labelled"] == 300 and late.requests + up.requests == 300


def test_all_endpoints_down_stops_with_a_clear_error_and_keeps_what_was_paid(make_recipe, tmp_path):
    ports = [free_port(), free_port()]
    servers = [FixedLatencyServer(0.02, port=p).start() for p in ports]
    recipe, rows, path = make_recipe(teacher([s.url for s in servers], concurrency=4), texts=60)
    watchers = [kill_after(s, 6) for s in servers]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "distill.cli", "teach", str(path), "--run-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120, env=env)
    for w in watchers:
        w.join(5)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "all 2 teacher endpoints are down" in out.stderr and "connection error" in out.stderr
    assert "run the same command again" in out.stderr
    cache = ResponseCache(tmp_path / "run/teacher-cache.sqlite")
    kept = len(cache)
    assert kept == sum(s.requests for s in servers) >= 12  # every answer received is kept
    cache.close()
    # both back on the same ports: the same command finishes, paying only for the rest
    servers = [FixedLatencyServer(0.02, port=p).start() for p in ports]
    try:
        out = subprocess.run([sys.executable, "-m", "distill.cli", "teach", str(path), "--run-dir",
                              str(tmp_path / "run")], capture_output=True, text=True, timeout=120, env=env)
    finally:
        for s in servers:
            s.stop()
    assert out.returncode == 0, out.stderr[-2000:]
    labelled = ids(tmp_path / "run/teach/labelled.jsonl")  # the training split: 59 rows, one held out for eval
    assert len(labelled) == len(set(labelled)) == 59 == kept + sum(s.requests for s in servers)
    cache = ResponseCache(tmp_path / "run/teacher-cache.sqlite")
    assert len(cache) == 59 and cache.ledger_totals()["requests"] == 59
    cache.close()


@pytest.mark.parametrize("base_url, problem", [
    ([], "teacher.base_url: the list is empty"),
    (["http://a:8000/v1", "http://a:8000/v1/"], "http://a:8000/v1 is listed more than once"),
    (["a:8000/v1"], "'a:8000/v1' is not an http(s) URL"),
    ([{"url": "http://a/v1", "weight": 0}], "teacher.base_url.0.weight: must be greater than 0"),
    ([{"url": "http://a/v1"}, {"url": "http://b/v1", "max_concurrency": 0}], "teacher.base_url.1.max_concurrency"),
    ([{"url": "http://a/v1", "rps": 5}], "teacher.base_url.0.rps: unknown key"),
    ([{"weight": 2}], "teacher.base_url.0.url: Field required"),
])
def test_the_recipe_names_a_bad_endpoint_list(make_recipe, base_url, problem):
    with pytest.raises(RecipeError) as err:
        make_recipe(teacher(base_url))
    assert problem in str(err.value)
    assert "Input should be a valid string" not in str(err.value)  # only the list form's problems


def test_a_missing_key_names_the_endpoint_and_its_variable(make_recipe, monkeypatch):
    monkeypatch.delenv("REGION_B_KEY", raising=False)
    monkeypatch.setenv("REGION_A_KEY", "a-key")
    recipe, _, _ = make_recipe(teacher([{"url": "https://a.example.com/v1", "api_key_env": "REGION_A_KEY"},
                                        {"url": "https://b.example.com/v1", "api_key_env": "REGION_B_KEY"}]))
    with pytest.raises(TeacherFatal, match="REGION_B_KEY.*https://b.example.com/v1"):
        OpenAIBackend(recipe.teacher, recipe.task.json_schema())


def test_the_resolved_recipe_and_the_ledger_show_no_credentials(make_recipe, tmp_path, monkeypatch):
    from distill.pipeline.runner import write_resolved

    recipe, _, _ = make_recipe(teacher(["https://alice:s3cret@a.example.com/v1",
                                        {"url": "https://bob:hunter2@b.example.com/v1", "weight": 2}]))
    (tmp_path / "run").mkdir()
    text = write_resolved(recipe, tmp_path / "run").read_text()
    assert "s3cret" not in text and "hunter2" not in text
    assert [e["url"] for e in json.loads(text)["teacher"]["base_url"]] == ["https://a.example.com/v1",
                                                                          "https://b.example.com/v1"]
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    backend = OpenAIBackend(recipe.teacher, recipe.task.json_schema())
    assert list(backend.pool.figures) == ["https://a.example.com/v1", "https://b.example.com/v1"]
    assert backend.endpoint == "https://a.example.com/v1"  # the first endpoint names the cache
