"""Edge-runtime fixtures: real bundles of the real Gemma 3 270M GGUF, a real server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.task import TaskSpec
from edge_runtime.server_settings import ServerSettings

FIXTURES = Path(__file__).parent / "fixtures"

SENTIMENT = {
    "name": "sentiment", "kind": "classification",
    "instructions": "Classify the sentiment of the review as positive or negative. Answer with JSON only.",
    "input_field": "text", "labels": ["positive", "negative"],
}
RECEIPTS = {
    "name": "receipts", "kind": "extraction",
    "instructions": "Extract the company name and the total amount from this receipt. Answer with JSON only.",
    "input_field": "ocr_lines",
    "fields": {"company": {}, "total": {"type": "amount"}},
}


def make_run_dir(root: Path, gguf: Path, task: dict, teacher: dict | None = None, threshold: float = 0.5,
                 max_new_tokens: int = 24) -> Path:
    """A run directory as `distill run` leaves it before pack (recipe, quantize record, eval)."""
    run = root / f"run-{task['name']}"
    (run / "quantize" / "eval").mkdir(parents=True, exist_ok=True)
    (run / "eval").mkdir(exist_ok=True)
    recipe = {"name": "t", "task": TaskSpec.model_validate(task).model_dump(), "teacher": teacher or {"kind": "dataset"},
              "eval": {"max_new_tokens": max_new_tokens},
              "target": {"profile": "router-8gb", "n_ctx": 1024, "parallel": 1, "confidence_threshold": threshold}}
    (run / "recipe.resolved.json").write_text(json.dumps(recipe))
    (run / "quantize" / "record.json").write_text(json.dumps(
        {"stage": "quantize", "outputs": {"artifacts": {"f16": str(gguf), "q4_k_m": str(gguf)}}}))
    (run / "eval" / "metrics.json").write_text(json.dumps({"student": {"headline": 0.5}}))
    (run / "quantize" / "eval" / "metrics.json").write_text(json.dumps({"gguf-q4_k_m": {"headline": 0.48}}))
    return run


@pytest.fixture(scope="session")
def sentiment_bundle(tmp_path_factory, gemma_gguf) -> Path:
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("bundles")
    return pack_run(make_run_dir(root, gemma_gguf, SENTIMENT, threshold=0.0), "router-8gb", root / "sentiment-bundle")


@pytest.fixture(scope="session")
def receipts_bundle(tmp_path_factory, gemma_gguf) -> Path:
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("bundles")
    return pack_run(make_run_dir(root, gemma_gguf, RECEIPTS, max_new_tokens=48), "router-8gb", root / "receipts-bundle")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread on 127.0.0.1 and a free port."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        import httpx

        self.thread.start()
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def sentiment_server(sentiment_bundle):
    """The sentiment bundle served with an API key, a small queue and a token cap."""
    from edge_runtime.server import create_app

    app = create_app(sentiment_bundle, ServerSettings(api_key="sekret", max_queue=4, timeout_s=60, max_body_bytes=64 * 1024,
                     n_threads=2, max_tokens_cap=8))
    with LiveServer(app) as live:
        yield live
