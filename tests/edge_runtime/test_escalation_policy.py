"""Escalation is the operator's decision: a bundle's teacher URL and key variable are a
suggestion that is never contacted on its own, the key comes from the variable the operator
names, and a failing teacher's URL and error body never reach the client."""

from __future__ import annotations

import json
import os

import httpx
import pytest
from fastapi import Request

from tests.edge_runtime.conftest import SENTIMENT, LiveServer, make_run_dir
from edge_runtime.server_settings import ServerSettings


def _recording_teacher(status: int = 200):
    """An OpenAI-compatible teacher that records the Authorization header it was sent."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    app.state.auth = []

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        app.state.auth.append(request.headers.get("authorization"))
        if status != 200:
            return PlainTextResponse("upstream secret-internal-detail at 10.0.0.7", status_code=status)
        return {"choices": [{"message": {"role": "assistant", "content": json.dumps({"label": "negative"})}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2}}

    @app.get("/healthz")
    async def health():
        return {}

    return app


@pytest.fixture(scope="module")
def teacher():
    with LiveServer(_recording_teacher()) as live:
        yield live


@pytest.fixture(scope="module")
def suggesting_bundle(tmp_path_factory, gemma_gguf, teacher):
    """A bundle whose generation.json suggests the teacher above, with credentials in the URL
    and a key variable that holds a secret; every answer is below its threshold."""
    from edge_runtime.bundle import pack_run

    root = tmp_path_factory.mktemp("suggesting")
    url = teacher.url.replace("http://", "http://user:hunter2@") + "/v1"
    run = make_run_dir(root, gemma_gguf, SENTIMENT, threshold=1.01,
                       teacher={"kind": "openai", "base_url": url, "model": "big", "api_key_env": "EDGE_TEST_BUNDLE_SECRET"})
    return pack_run(run, "router-8gb", root / "bundle")


def _ask(app) -> dict:
    with LiveServer(app) as live:
        r = httpx.post(live.url + "/v1/tasks/sentiment", json={"input": "It was fine I suppose."}, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()


def test_credentials_in_a_teacher_url_are_not_written_to_the_bundle(suggesting_bundle):
    generation = (suggesting_bundle / "generation.json").read_text()
    assert "hunter2" not in generation and "user:" not in generation
    assert json.loads(generation)["teacher"]["base_url"].startswith("http://127.0.0.1:")


def test_a_bundle_alone_never_escalates_nor_reads_the_variable_it_names(suggesting_bundle, teacher, monkeypatch):
    from edge_runtime.server import create_app

    monkeypatch.setenv("EDGE_TEST_BUNDLE_SECRET", "the-bundle-wants-this")
    calls = len(teacher.app.state.auth)
    body = _ask(create_app(suggesting_bundle, ServerSettings(n_threads=2)))
    assert body["source"] == "student" and body["low_confidence"] and "escalation_error" not in body
    assert len(teacher.app.state.auth) == calls  # never contacted


def test_the_operator_enables_escalation_and_names_the_key(suggesting_bundle, teacher, monkeypatch):
    from edge_runtime.server import create_app

    monkeypatch.setenv("EDGE_TEST_BUNDLE_SECRET", "the-bundle-wants-this")
    monkeypatch.setenv("EDGE_TEST_OPERATOR_KEY", "operator-key")
    body = _ask(create_app(suggesting_bundle, ServerSettings(n_threads=2, teacher_url=teacher.url + "/v1",
                           teacher_key_env="EDGE_TEST_OPERATOR_KEY")))
    assert body["source"] == "teacher" and body["answer"] == {"label": "negative"}
    assert teacher.app.state.auth[-1] == "Bearer operator-key"
    assert "the-bundle-wants-this" not in str(teacher.app.state.auth)


def test_escalation_errors_do_not_echo_the_teacher_url_or_body(suggesting_bundle):
    from edge_runtime.server import create_app

    with LiveServer(_recording_teacher(status=503)) as failing:
        url = failing.url.replace("http://", "http://user:hunter2@") + "/v1"
        body = _ask(create_app(suggesting_bundle, ServerSettings(n_threads=2, teacher_url=url)))
    assert body["source"] == "student" and body["escalation_error"] == "teacher answered HTTP 503"
    text = json.dumps(body)
    assert "secret-internal-detail" not in text and "hunter2" not in text and str(failing.port) not in text


def test_cli_help_says_the_bundle_only_suggests():
    from edge_runtime.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    assert "only a suggestion" in serve and "--teacher-key-env" in serve
    assert os.environ.get("EDGE_TEST_BUNDLE_SECRET") is None
