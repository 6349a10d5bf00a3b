"""Server limits on a real server on loopback: the body limit holds for chunked bodies too,
and a generation that runs past its deadline is stopped (504), frees the model, and the
next request is served. Queue wait and generation timeouts are told apart and counted."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from tests.edge_runtime.conftest import LiveServer
from edge_runtime.server_settings import ServerSettings

AUTH = {"Authorization": "Bearer sekret"}
LIMIT = 64 * 1024  # the sentiment_server fixture's max_body_bytes


def _chunked_post(port: int, path: str, chunks: list[bytes], finish: bool) -> bytes:
    """POST with Transfer-Encoding: chunked and no Content-Length over a raw socket; with
    finish=False the terminating chunk is never sent, so only a server that checks the
    count as bytes arrive can answer. Returns the raw response head and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sekret\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        try:
            for chunk in chunks:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if finish:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the rest is sent
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 20:
            got = sock.recv(65536)
            if not got:
                break
            data += got
        return data


@pytest.mark.parametrize("path", ["/v1/tasks/sentiment", "/v1/completions"])
def test_chunked_body_over_the_limit_is_refused_while_it_arrives(sentiment_server, path):
    chunks = [b"x" * (16 * 1024)] * 5  # 80 KiB > 64 KiB, and never finished
    start = time.perf_counter()
    raw = _chunked_post(sentiment_server.port, path, chunks, finish=False)
    assert raw.startswith(b"HTTP/1.1 413"), raw[:300]
    text = raw.decode(errors="replace")
    assert str(LIMIT) in text and "--max-body" in text
    assert time.perf_counter() - start < 30
    assert httpx.get(sentiment_server.url + "/healthz", timeout=10).status_code == 200


def test_chunked_body_under_the_limit_is_served(sentiment_server):
    def body():
        yield b'{"prompt": "One, two,",'
        yield b' "max_tokens": 2}'

    r = httpx.post(sentiment_server.url + "/v1/completions", content=body(), timeout=120,
                   headers={**AUTH, "content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked" and "content-length" not in r.request.headers
    assert r.status_code == 200, r.text
    raw = _chunked_post(sentiment_server.port, "/v1/tasks/sentiment", [b'{"input": ', b'"Lovely film."}'], finish=True)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    metrics = httpx.get(sentiment_server.url + "/metrics", headers=AUTH).text
    assert 'edge_requests_total{endpoint="/v1/completions",status="413"}' in metrics


@pytest.fixture(scope="module")
def timeout_server(sentiment_bundle):
    """A server with a short generation timeout and no token cap."""
    from edge_runtime.server import create_app

    app = create_app(sentiment_bundle, ServerSettings(n_threads=2, max_queue=4, timeout_s=60, request_timeout_s=1.0))
    with LiveServer(app) as live:
        yield live
    app.state.close()


LONG = {"prompt": "a a a a a a a a a a a a", "max_tokens": 4096}  # the model repeats "a" until stopped


def test_generation_timeout_stops_llama_cpp_and_the_next_request_succeeds(timeout_server):
    url, state = timeout_server.url, timeout_server.app.state
    start = time.perf_counter()
    r = httpx.post(url + "/v1/completions", json=LONG, timeout=120)
    took = time.perf_counter() - start
    assert r.status_code == 504, r.text[:300]
    error = r.json()["error"]
    assert "generation timeout" in error and "1s" in error and "--request-timeout" in error
    assert took < 30  # 4096 tokens at a few tokens/s would take many minutes
    # the task endpoint: a deadline that passes at the first token
    state.request_timeout_s = 0.001
    r = httpx.post(url + "/v1/tasks/sentiment", json={"input": "Great film."}, timeout=120)
    assert r.status_code == 504 and "generation timeout" in r.json()["error"]
    # the model lock and slot were released: normal requests are served
    state.request_timeout_s = 120.0
    r = httpx.post(url + "/v1/tasks/sentiment", json={"input": "Great film."}, timeout=120)
    assert r.status_code == 200 and r.json()["answer"]["label"] in ("positive", "negative")
    r = httpx.post(url + "/v1/completions", json={"prompt": "One, two,", "max_tokens": 3}, timeout=120)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    metrics = httpx.get(url + "/metrics").text
    assert 'edge_timeouts_total{kind="generation"} 2.0' in metrics


def test_queue_wait_timeout_is_told_apart_and_streams_end_with_an_error(timeout_server):
    from openai import APIError, OpenAI

    url, state = timeout_server.url, timeout_server.app.state
    state.request_timeout_s, state.slots.timeout_s = 3.0, 0.5
    try:
        results: dict[str, httpx.Response] = {}
        long = threading.Thread(target=lambda: results.setdefault("long", httpx.post(url + "/v1/completions", json=LONG, timeout=120)))
        long.start()
        time.sleep(0.5)  # the long request holds the only slot
        waiting = httpx.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 2}, timeout=120)
        long.join()
        assert waiting.status_code == 504 and "queue wait timeout" in waiting.json()["error"]
        assert "--queue-timeout" in waiting.json()["error"] and "generation" not in waiting.json()["error"]
        assert results["long"].status_code == 504 and "generation timeout" in results["long"].json()["error"]
        # a stream has sent its 200 already: it ends with an OpenAI-style error event
        state.request_timeout_s = 1.0
        client = OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        pieces = []
        with pytest.raises(APIError, match="generation timeout"):
            for chunk in client.completions.create(model="x", stream=True, **LONG):
                pieces.append(chunk.choices[0].text)
        assert len(pieces) < 200
        # chat with a model's own template takes no stopping criteria: the deadline forces end-of-text
        from edge_runtime.engines.llamacpp import GenerationTimeout

        pred = state.slots.predictors[0]
        saved, pred.llm.chat_format = pred.llm.chat_format, "gemma"  # Gemma's turn format: it keeps answering "a a a"
        try:
            with pytest.raises(GenerationTimeout, match="generation timeout of 0.5s"):
                pred.chat([{"role": "user", "content": LONG["prompt"]}], timeout_s=0.5, max_tokens=4096)
        finally:
            pred.llm.chat_format = saved
    finally:
        state.request_timeout_s, state.slots.timeout_s = 1.0, 60
    metrics = httpx.get(url + "/metrics").text
    assert 'edge_timeouts_total{kind="queue"} 1.0' in metrics
    assert httpx.post(url + "/v1/completions", json={"prompt": "One,", "max_tokens": 2}, timeout=120).status_code == 200


def test_model_work_stays_on_the_slot_thread_and_a_dropped_stream_frees_the_slot(timeout_server):
    """llama.cpp runs only on the slot's own thread (so its buffers come from one malloc arena, not
    one per pool thread), and a client leaving mid-stream stops generation and frees the slot."""
    url, state = timeout_server.url, timeout_server.app.state
    state.request_timeout_s, state.slots.timeout_s = 30.0, 20.0
    pred = state.slots.predictors[0]
    seen: list[str] = []
    real_eval = pred.llm.eval
    pred.llm.eval = lambda tokens: (seen.append(threading.current_thread().name), real_eval(tokens))[1]
    try:
        threads = [threading.Thread(target=httpx.post, args=(url + "/v1/tasks/sentiment",),
                                    kwargs={"json": {"input": f"Film {i} was fine."}, "timeout": 120}) for i in range(3)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        with httpx.stream("POST", url + "/v1/completions", json={**LONG, "stream": True}, timeout=120) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i >= 3:
                    break  # leave mid-stream; 4096 tokens would run into the 30 s deadline
        start = time.perf_counter()
        r = httpx.post(url + "/v1/tasks/sentiment", json={"input": "Great film."}, timeout=120)
        assert r.status_code == 200, r.text  # not a queue wait timeout: the dropped stream freed the slot
        assert time.perf_counter() - start < 20
    finally:
        pred.llm.eval = real_eval
    assert seen and set(seen) == {"edge-slot0_0"}, set(seen)
