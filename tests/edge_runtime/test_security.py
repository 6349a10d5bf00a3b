"""The server under hostile input, on a real server on loopback: cross-site requests (wrong
Content-Type, a foreign Host or Origin), a keyless bind on the network, JSON that Python's
parser takes but nothing else can hold (NaN, 1e400, lone surrogates, deep nesting), and a
streamed prompt longer than the context. Every refusal is a 4xx with the problem named,
counted in /metrics, and the server keeps serving."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.edge_runtime.conftest import LiveServer
from edge_runtime.server_settings import ServerSettings

AUTH = {"Authorization": "Bearer sekret"}


@pytest.fixture(scope="module")
def keyless_server(sentiment_bundle):
    """The default a user gets: no API key, loopback."""
    from edge_runtime.server import create_app

    app = create_app(sentiment_bundle, ServerSettings(n_threads=2, max_queue=4, timeout_s=60, max_body_bytes=64 * 1024, max_tokens_cap=4))
    with LiveServer(app) as live:
        yield live


# ---- cross-site use of a local server ----------------------------------------------
@pytest.mark.parametrize("path", ["/v1/tasks/sentiment", "/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_web_page_cannot_post_a_simple_request(keyless_server, path, ctype):
    """What a page may send cross-site without a CORS preflight is refused before the model runs."""
    body = json.dumps({"input": "great", "prompt": "x", "messages": [{"role": "user", "content": "x"}]}).encode()
    headers = {"content-type": ctype} if ctype else {}
    r = httpx.post(keyless_server.url + path, content=body, headers=headers, timeout=60)
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["error"]


def test_multipart_only_on_the_upload_route(keyless_server):
    r = httpx.post(keyless_server.url + "/v1/completions", files={"prompt": ("p.txt", b"hi", "text/plain")}, timeout=60)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    # the task route takes multipart (here: a classification task, which then says it takes JSON)
    r = httpx.post(keyless_server.url + "/v1/tasks/sentiment", files={"image": ("a.jpg", b"x", "image/jpeg")}, timeout=60)
    assert r.status_code == 415 and "takes JSON" in r.json()["error"]


def test_json_content_types_with_parameters_are_served(keyless_server):
    r = httpx.post(keyless_server.url + "/v1/tasks/sentiment", content=json.dumps({"input": "Lovely."}).encode(),
                   headers={"content-type": "application/json; charset=utf-8"}, timeout=120)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.1.2.3"])
def test_a_foreign_host_header_is_refused(keyless_server, host):
    """DNS rebinding: the page's own name arrives as Host; the answer must not reach it."""
    for method, path, kw in (("GET", "/healthz", {}), ("POST", "/v1/tasks/sentiment", {"json": {"input": "ok"}})):
        r = httpx.request(method, keyless_server.url + path, headers={"Host": host}, timeout=60, **kw)
        assert r.status_code == 421, (host, path, r.text)
        assert "--allowed-host" in r.json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_loopback_names_are_served(keyless_server, host):
    port = keyless_server.port
    r = httpx.get(keyless_server.url + "/healthz", headers={"Host": f"{host}:{port}"}, timeout=10)
    assert r.status_code == 200, r.text


def test_a_cross_site_origin_is_refused(keyless_server):
    r = httpx.post(keyless_server.url + "/v1/tasks/sentiment", json={"input": "ok"},
                   headers={"Origin": "https://evil.example"}, timeout=60)
    assert r.status_code == 403 and "cross-site" in r.json()["error"]
    r = httpx.post(keyless_server.url + "/v1/tasks/sentiment", files={"image": ("a.jpg", b"x", "image/jpeg")},
                   headers={"Origin": "null"}, timeout=60)
    assert r.status_code == 403
    ok = httpx.get(keyless_server.url + "/healthz", headers={"Origin": keyless_server.url}, timeout=10)
    assert ok.status_code == 200


def test_allowed_host_flag_admits_a_name(sentiment_bundle):
    from starlette.testclient import TestClient  # the policy only: the model is loaded once more

    from edge_runtime.server import create_app

    app = create_app(sentiment_bundle, ServerSettings(n_threads=1, allowed_hosts=("box.lan",)))
    with TestClient(app, base_url="http://box.lan") as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/healthz", headers={"Host": "other.lan"}).status_code == 421
    app.state.close()


def test_keyless_bind_on_the_network_is_refused(sentiment_bundle, tmp_path):
    from edge_runtime.security import check_bind

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "serve", str(sentiment_bundle), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120, cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "without an API key" in out.stderr and "--insecure-no-key" in out.stderr
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(ValueError, match="--insecure-no-key"):
            check_bind(host, None)
        check_bind(host, "a-key")
        check_bind(host, None, insecure_no_key=True)
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, None)


def test_api_key_from_env_or_file_not_argv(tmp_path):
    from edge_runtime.cli import _api_key, build_parser

    parse = build_parser().parse_args
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert _api_key(parse(["serve", "b", "--api-key-file", str(key_file)])) == "from-file"
    import os

    os.environ["EDGE_TEST_SERVER_KEY"] = "from-env"
    try:
        assert _api_key(parse(["serve", "b", "--api-key-env", "EDGE_TEST_SERVER_KEY"])) == "from-env"
    finally:
        del os.environ["EDGE_TEST_SERVER_KEY"]
    with pytest.raises(ValueError, match="unset or empty"):
        _api_key(parse(["serve", "b", "--api-key-env", "EDGE_TEST_SERVER_KEY"]))


# ---- JSON the rest of the server cannot hold -----------------------------------------
HOSTILE = {
    "NaN": '{"input": NaN, "prompt": "x", "temperature": NaN}',
    "Infinity": '{"input": "a", "prompt": "x", "temperature": -Infinity}',
    "1e400": '{"input": "a", "prompt": "x", "temperature": 1e400}',
    "lone surrogate": '{"input": "\\ud800", "prompt": "\\ud800", "messages": [{"role": "user", "content": "\\udfff"}]}',
    "surrogate key": '{"\\ud800": 1, "input": "a", "prompt": "x"}',
    "deep nesting": '{"input": ' + "[" * 20_000 + "]" * 20_000 + "}",
    "huge integer": '{"input": "a", "prompt": "x", "max_tokens": ' + "9" * 5000 + "}",
}


@pytest.mark.parametrize("path", ["/v1/tasks/sentiment", "/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("what", list(HOSTILE))
def test_hostile_json_gets_400_not_500(sentiment_server, path, what):
    r = httpx.post(sentiment_server.url + path, content=HOSTILE[what].encode(),
                   headers={**AUTH, "content-type": "application/json"}, timeout=60)
    assert r.status_code == 400, (what, r.status_code, r.text[:300])
    assert r.json()["error"]
    assert httpx.get(sentiment_server.url + "/healthz", timeout=10).status_code == 200


def test_refusals_are_counted_in_metrics(sentiment_server):
    def count(status: str) -> float:
        text = httpx.get(sentiment_server.url + "/metrics", headers=AUTH, timeout=10).text
        line = f'edge_requests_total{{endpoint="/v1/tasks",status="{status}"}}'
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line))

    before = count("400"), count("415")
    httpx.post(sentiment_server.url + "/v1/tasks/sentiment", content=HOSTILE["NaN"].encode(),
               headers={**AUTH, "content-type": "application/json"}, timeout=60)
    httpx.post(sentiment_server.url + "/v1/tasks/sentiment", content=b"{}", headers={**AUTH, "content-type": "text/plain"})
    assert (count("400"), count("415")) == (before[0] + 1, before[1] + 1)


# ---- errors in a stream reach the client ----------------------------------------------
@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "word " * 3000, "max_tokens": 4, "stream": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 4, "stream": True}),
])
def test_streamed_prompt_over_the_context_is_413_not_an_empty_200(sentiment_server, path, body):
    r = httpx.post(sentiment_server.url + path, json=body, headers=AUTH, timeout=120)
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert "context" in r.json()["error"]
    ok = httpx.post(sentiment_server.url + "/v1/completions", json={"prompt": "One, two,", "max_tokens": 2, "stream": True},
                    headers=AUTH, timeout=120)
    assert ok.status_code == 200 and "[DONE]" in ok.text


def test_a_value_error_is_413_only_when_it_is_about_the_context():
    from edge_runtime.server import slot_error

    assert slot_error(ValueError("Requested tokens (3001) exceed context window of 1024"), "shorten").status_code == 413
    assert slot_error(ValueError("the prompt has 3001 tokens; the context holds 1024"), "shorten").status_code == 413
    other = slot_error(ValueError("logprobs is not supported for models created with logits_all=False"), "shorten")
    assert other.status_code == 400 and "logprobs" in other.detail and "shorten" not in other.detail
