"""Hot swap under load: a real server on loopback keeps answering while POST /admin/reload
moves it to a new bundle; no request fails or goes unlogged, the old bundle answers what it had
started, and a bad reload leaves the old bundle serving."""

import threading
import time

import httpx
import pytest

from edge_runtime.request_log import LogSettings, read_log
from tests.edge_runtime.conftest import RECEIPTS, SENTIMENT, LiveServer, make_run_dir

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
    from edge_runtime.production import LoopSettings
    from edge_runtime.server import create_app

    app = create_app(bundles["old"], api_key="sekret", admin_token="root-token", n_threads=1, parallel=2,
                     loop=LoopSettings(log=LogSettings(tmp_path / "log", inputs="full", flush_interval_s=0.05)))
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
        assert health["slots"] == 2
    app.state.close()

    assert len(results) >= 16 and all(status == 200 for status, _ in results), [r for r in results if r[0] != 200]
    records = list(read_log(tmp_path / "log"))
    assert sorted(r["id"] for r in records) == sorted(i for _, i in results)  # every answered request logged
    ids = [r["bundle"] for r in records]
    assert ids[0] == old_id and ids[-1] == body["bundle"]
    assert set(ids) == {old_id, body["bundle"]}


def test_reload_is_off_without_an_admin_token(bundles):
    from edge_runtime.server import create_app

    app = create_app(bundles["old"], n_threads=1)
    with LiveServer(app) as live:
        r = httpx.post(live.url + "/admin/reload", json={})
        assert r.status_code == 404 and "--admin-token-env" in r.json()["error"]
    app.state.close()
