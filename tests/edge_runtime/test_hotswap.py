"""Hot swap under load: a real server on loopback keeps answering while POST /admin/reload
moves it to a new bundle; no request fails or goes unlogged, the old bundle answers what it had
started, and a bad reload leaves the old bundle serving."""

import threading
import time

import httpx
import pytest

from edge_runtime.request_log import LogSettings, read_log
from tests.edge_runtime.conftest import RECEIPTS, SENTIMENT, LiveServer, make_run_dir
from edge_runtime.server_settings import ServerSettings

AUTH = {"Authorization": "Bearer sekret"}
ADMIN = {**AUTH, "X-Admin-Token": "root-token"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, tiny_f16_gguf):
    """Two sentiment bundles of the tiny model (different instructions: different manifests) and
    a bundle of another task."""
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("swap")
    out = {}
    for name, task in (("old", SENTIMENT), ("new", {**SENTIMENT, "instructions": "Is this review positive or negative?"}),
                       ("receipts", RECEIPTS)):
        out[name] = pack_run(make_run_dir(root / name, tiny_f16_gguf, task, threshold=0.0), "router-8gb", root / name / "b")
    return out


def test_hot_swap_under_concurrent_requests_drops_none(bundles, tmp_path):
    """With shadow sampling on: the sampler (and its budget) carries over to the new bundle."""
    from edge_runtime.production import LoopSettings
    from edge_runtime.server import create_app
    from edge_runtime.shadow import ShadowSettings
    from tests.edge_runtime.test_server import _teacher_app

    teacher = LiveServer(_teacher_app({"label": "negative"})).__enter__()
    app = create_app(bundles["old"], ServerSettings(api_key="sekret", admin_token="root-token", n_threads=1, parallel=2,
                     teacher_url=teacher.url + "/v1", teacher_model="m",
                     loop=LoopSettings(log=LogSettings(tmp_path / "log", inputs="full", flush_interval_s=0.05),
                                       shadow=ShadowSettings(fraction=0.5, max_per_hour=None))))
    sampler = app.state.loop.shadow
    old_id = app.state.loop.bundle_id
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(timeout=120) as c:
            i = 0
            while not stop.is_set():
                r = c.post(live.url + "/v1/tasks/sentiment", json={"input": f"client {n} review {i}: fine"}, headers=AUTH)
                results.append((r.status_code, r.json().get("id", r.text)))
                i += 1

    with LiveServer(app) as live:
        url = live.url + "/admin/reload"
        assert httpx.post(url, json={"bundle": str(bundles["new"])}, headers=AUTH).status_code == 403
        assert httpx.post(url, json={}, headers={**AUTH, "X-Admin-Token": "nope"}).status_code == 403
        for body in ({"bundle": 5}, {"bundle": ""}, [1]):
            bad = httpx.post(url, json=body, headers=ADMIN)
            assert bad.status_code == 400 and "bundle" in bad.json()["error"], body
        refused = httpx.post(url, json={"bundle": str(bundles["receipts"])}, headers=ADMIN, timeout=60)
        assert refused.status_code == 409 and "different tasks" in refused.json()["error"]
        assert app.state.loop.bundle_id == old_id  # still the old bundle

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        while len(results) < 8:
            time.sleep(0.05)
        old_predictors = list(app.state.slots.predictors)
        swapped = httpx.post(url, json={"bundle": str(bundles["new"])}, headers=ADMIN, timeout=120)
        before = len(results)
        while len(results) < before + 8:
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(120)
        assert swapped.status_code == 200, swapped.text
        body = swapped.json()
        assert body["status"] == "swapped" and body["previous"] == old_id and body["bundle"] != old_id
        retiring = app.state.retiring
        deadline = time.time() + 60
        while not retiring.done() and time.time() < deadline:
            time.sleep(0.05)
        assert retiring.done() and all(p.llm is None for p in old_predictors)  # the old model is freed
        health = httpx.get(live.url + "/healthz").json()
        assert health["slots"] == 2 and app.state.loop.shadow is sampler
        metrics = httpx.get(live.url + "/metrics", headers=AUTH).text
    app.state.close()
    teacher.__exit__(None, None, None)
    assert "edge_shadow_requests_total" in metrics  # the sampler's metrics stay registered, once
    assert sum(ln.startswith("edge_answer_cache_hits_total ") for ln in metrics.splitlines()) == 1  # the new cache's

    assert len(results) >= 16 and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200]
    records = list(read_log(tmp_path / "log"))
    assert sorted(r["id"] for r in records) == sorted(i for _, i in results)  # every answered request logged
    ids = [r["bundle"] for r in records]
    assert ids[0] == old_id and ids[-1] == body["bundle"]
    assert set(ids) == {old_id, body["bundle"]}
    shadowed = [r for r in records if r.get("shadow")]
    assert {r["bundle"] for r in shadowed} == {old_id, body["bundle"]}  # sampled before and after the swap
    assert all(r["teacher_answer"] == {"label": "negative"} for r in shadowed)


def test_reload_is_off_without_an_admin_token(bundles):
    from edge_runtime.server import create_app

    app = create_app(bundles["old"], ServerSettings(n_threads=1))
    with LiveServer(app) as live:
        r = httpx.post(live.url + "/admin/reload", json={})
        assert r.status_code == 404 and "--admin-token-env" in r.json()["error"]
    app.state.close()


def test_sighup_reloads_the_bundle_at_the_start_path(bundles, tmp_path):
    """The real `edge-runtime serve` process: replace the bundle at its path, send SIGHUP, and
    the next request is answered (and logged) by the new bundle."""
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from edge_runtime.bundle import load_bundle
    from edge_runtime.answer_cache import manifest_digest
    from tests.edge_runtime.conftest import free_port

    live_path = tmp_path / "current"
    shutil.copytree(bundles["old"], live_path)
    port, logdir = free_port(), tmp_path / "log"
    env = {**os.environ, "EDGE_KEY": "sekret"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "serve", str(live_path), "--port", str(port),
                             "--api-key-env", "EDGE_KEY", "--threads", "1", "--log-dir", str(logdir), "--log-inputs", "full"],
                            env=env, stderr=open(tmp_path / "stderr.txt", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        ask = lambda text: httpx.post(url + "/v1/tasks/sentiment", json={"input": text}, headers=AUTH, timeout=120)  # noqa: E731
        assert ask("before the swap").status_code == 200
        shutil.rmtree(live_path)
        shutil.copytree(bundles["new"], live_path)
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 120  # the new bundle is verified and loaded while the old one serves
        while "SIGHUP:" not in (tmp_path / "stderr.txt").read_text() and time.time() < deadline:
            assert proc.poll() is None  # SIGHUP does not stop the server
            time.sleep(0.2)
        assert ask("after the swap").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = (tmp_path / "stderr.txt").read_text()
    assert "SIGHUP:" in err and "swapped" in err, err[-2000:]
    records = {r["input"]: r["bundle"] for r in read_log(logdir)}
    assert records["before the swap"] == manifest_digest(load_bundle(bundles["old"]).manifest)
    assert records["after the swap"] == manifest_digest(load_bundle(bundles["new"]).manifest)
