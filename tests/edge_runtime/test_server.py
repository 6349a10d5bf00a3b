"""The server against the official openai client and raw HTTP: answers, streaming, metrics,
escalation and every kind of bad input (4xx with a message, server keeps serving)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.edge_runtime.conftest import FIXTURES, LiveServer, free_port
from edge_runtime.server_settings import ServerSettings

AUTH = {"Authorization": "Bearer sekret"}


@pytest.fixture()
def client(sentiment_server):
    from openai import OpenAI

    return OpenAI(base_url=sentiment_server.url + "/v1", api_key="sekret", max_retries=0, timeout=120)


def test_openai_completions_chat_and_streaming(client):
    out = client.completions.create(model="x", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert out.choices[0].text.strip() and out.usage.completion_tokens > 0
    chat = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Say hello."}], max_tokens=6)
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens > 0
    pieces = [c.choices[0].text for c in client.completions.create(model="x", prompt="One, two,", max_tokens=5, stream=True)]
    assert len(pieces) >= 2 and "".join(pieces).strip()
    chunks = list(client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True))
    assert chunks and any((c.choices[0].delta.content or "") for c in chunks if c.choices)


def test_task_endpoint_answers_in_schema_with_confidence(sentiment_server):
    for text in ("I loved it, wonderful film.", "Terrible, boring and far too long."):
        r = httpx.post(sentiment_server.url + "/v1/tasks/sentiment", json={"input": text}, headers=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"]["label"] in ("positive", "negative")
        assert 0.0 < body["confidence"] <= 1.0 and body["source"] == "student"
    # the input column's own name works too
    r = httpx.post(sentiment_server.url + "/v1/tasks/sentiment", json={"text": "Great!"}, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.json()["answer"]["label"] in ("positive", "negative")


@pytest.mark.parametrize("kwargs, status, words", [
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": {"input": 5}}, 422, "input"),
    ({"json": {"nothing": "here"}}, 422, "input"),
    ({"json": {"input": ""}}, 422, "empty"),
    ({"content": b"x" * (65 * 1024), "headers": {"content-type": "application/json"}}, 413, "too large"),
    ({"files": {"image": ("a.jpg", b"plain text, not an image", "image/jpeg")}}, 415, "task"),
])
def test_bad_task_requests_get_4xx_with_a_message(sentiment_server, kwargs, status, words):
    headers = {**AUTH, **kwargs.pop("headers", {})}
    r = httpx.post(sentiment_server.url + "/v1/tasks/sentiment", headers=headers, timeout=60, **kwargs)
    assert r.status_code == status, r.text
    assert words.lower() in r.text.lower()
    assert httpx.get(sentiment_server.url + "/healthz", timeout=10).status_code == 200


def test_unknown_task_wrong_types_and_auth(sentiment_server):
    url = sentiment_server.url
    r = httpx.post(url + "/v1/tasks/nope", json={"input": "x"}, headers=AUTH)
    assert r.status_code == 404 and "sentiment" in r.json()["error"]
    r = httpx.post(url + "/v1/completions", json={"prompt": 3, "max_tokens": "many"}, headers=AUTH)
    assert r.status_code == 422 and "max_tokens" in r.text
    r = httpx.post(url + "/v1/chat/completions", json={"messages": []}, headers=AUTH)
    assert r.status_code == 422
    assert httpx.post(url + "/v1/completions", json={"prompt": "x"}).status_code == 401
    assert httpx.post(url + "/v1/completions", json={"prompt": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_count_requests_tokens_and_validity(sentiment_server):
    httpx.post(sentiment_server.url + "/v1/tasks/sentiment", json={"input": "fine"}, headers=AUTH, timeout=120)
    text = httpx.get(sentiment_server.url + "/metrics", headers=AUTH).text
    for name in ("edge_requests_total", "edge_request_latency_seconds_bucket", "edge_tokens_total",
                 "edge_schema_valid_ratio", "edge_escalations_total", "edge_queue_depth"):
        assert name in text, name
    assert 'edge_task_answers_total{valid="true"}' in text and "edge_schema_valid_ratio 1.0" in text


def _teacher_app(answer: dict, refuse_schema: bool = False):
    """A teacher endpoint; with refuse_schema it answers json_schema as llama.cpp's server does."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()
    app.state.calls = 0
    app.state.formats = []

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        fmt = (body.get("response_format") or {}).get("type", "none")
        app.state.formats.append(fmt)
        if refuse_schema and fmt == "json_schema":
            return PlainTextResponse("Internal Server Error: unsupported response_format type", status_code=500)
        app.state.calls += 1
        if fmt == "json_schema":
            assert body["response_format"]["json_schema"]["schema"]["required"] == ["label"]
        return {"choices": [{"message": {"role": "assistant", "content": json.dumps(answer)}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10}}

    @app.get("/healthz")
    async def health():
        return {}

    return app


def test_low_confidence_escalates_to_teacher_and_unreachable_teacher_flags(sentiment_server):
    from edge_runtime.router import TeacherEndpoint

    router = sentiment_server.app.state.router
    saved = router.threshold, router.teacher
    try:
        with LiveServer(_teacher_app({"label": "negative"})) as teacher:
            router.threshold = 1.01  # every student answer is below it
            router.teacher = TeacherEndpoint(teacher.url + "/v1", "big", usd_per_1k_input=1.0, usd_per_1k_output=2.0)
            body = httpx.post(sentiment_server.url + "/v1/tasks/sentiment", json={"input": "ok I guess"}, headers=AUTH, timeout=120).json()
            assert body["source"] == "teacher" and body["escalated"] and body["answer"] == {"label": "negative"}
            assert body["cost_usd"] == pytest.approx(0.12) and teacher.app.state.calls == 1
        router.teacher = TeacherEndpoint(f"http://127.0.0.1:{free_port()}/v1", "gone", timeout_s=2)
        body = httpx.post(sentiment_server.url + "/v1/tasks/sentiment", json={"input": "meh"}, headers=AUTH, timeout=120).json()
        assert body["source"] == "student" and body["low_confidence"] and "unreachable" in body["escalation_error"]
        assert body["answer"]["label"] in ("positive", "negative")
        metrics = httpx.get(sentiment_server.url + "/metrics", headers=AUTH).text
        assert "edge_escalations_total 1.0" in metrics and "edge_teacher_failures_total 1.0" in metrics
    finally:
        router.threshold, router.teacher = saved


def test_full_queue_answers_429_and_server_recovers(sentiment_server):
    url, n = sentiment_server.url, 12  # 1 slot + 4 waiting; the rest must be refused
    statuses: list[int] = []

    def call():
        r = httpx.post(url + "/v1/completions", json={"prompt": "Count: 1, 2,", "max_tokens": 8}, headers=AUTH, timeout=120)
        statuses.append(r.status_code)

    threads = [threading.Thread(target=call) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(429) >= 1 and statuses.count(200) >= 5, statuses
    assert set(statuses) <= {200, 429}
    assert httpx.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}, headers=AUTH, timeout=60).status_code == 200


def test_receipt_image_extraction(receipts_bundle):
    from edge_runtime.server import create_app

    with LiveServer(create_app(receipts_bundle, ServerSettings(n_threads=2))) as live:
        image = (FIXTURES / "receipt-000.jpg").read_bytes()
        r = httpx.post(live.url + "/v1/tasks/receipts", files={"image": ("r.jpg", image, "image/jpeg")}, timeout=300)
        assert r.status_code == 200, r.text
        body = r.json()
        assert any("JOHOR" in line.upper() for line in body["ocr_lines"])
        assert set(body["field_confidence"]) == {"company", "total"}
        if body["answer"] is not None:  # valid by construction unless cut at max_new_tokens
            assert set(body["answer"]) == {"company", "total"}
        r = httpx.post(live.url + "/v1/tasks/receipts", files={"image": ("r.txt", b"hello", "text/plain")}, timeout=60)
        assert r.status_code == 415 and "image" in r.json()["error"]


def test_input_longer_than_context_is_413(sentiment_server):
    r = httpx.post(sentiment_server.url + "/v1/tasks/sentiment", json={"input": "word " * 6000}, headers=AUTH, timeout=120)
    assert r.status_code == 413 and "context" in r.json()["error"]
    assert httpx.get(sentiment_server.url + "/healthz", timeout=10).status_code == 200


def test_escalation_falls_back_when_the_teacher_refuses_json_schema():
    from edge_runtime.router import Router, TeacherEndpoint
    from edge_runtime.task import TaskSpec

    task = TaskSpec(name="sentiment", kind="classification", instructions="x", labels=["positive", "negative"])
    with LiveServer(_teacher_app({"label": "negative"}, refuse_schema=True)) as teacher:
        router = Router(task, 0.5, TeacherEndpoint(teacher.url + "/v1", "big"))
        for _ in range(2):
            answer, _, _ = router.ask_teacher({"text": "bad"})
            assert answer == {"label": "negative"}
        # refused once, then the router remembers the mode the teacher takes
        assert teacher.app.state.formats == ["json_schema", "json_object", "json_object"]
