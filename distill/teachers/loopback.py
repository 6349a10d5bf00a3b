"""Loopback OpenAI-compatible endpoints for testing a teacher setup without paying:

- `FixedLatencyServer`: answers every chat completion with a fixed answer after a fixed
  delay (the throughput benchmark's endpoint).
- `RecordingServer`: records every body it receives and answers with a function of it.
- `FaultProxy`: sits in front of a real endpoint and injects the failures real APIs
  produce: 429 with Retry-After, 500, a hang, a garbage body, a reset connection. It
  records the usage of every reply it really delivered, so a ledger can be checked exactly.

Plain asyncio HTTP/1.1 with keep-alive, 127.0.0.1 only. Run one from the shell with
`python -m distill.teachers.loopback fixed --port 8099 --latency 0.2`.
"""

from __future__ import annotations

import argparse
import abc
import asyncio
import json
import socket
import struct
import threading
import time
from typing import Any

import httpx

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 503: "Service Unavailable"}


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return method, path, headers, body


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Length: {len(body)}",
            "Content-Type: application/json", "Connection: keep-alive"]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Server(abc.ABC):
    """An asyncio server on 127.0.0.1 in its own thread; `url` is its /v1 base."""

    def __init__(self, port: int = 0):
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> "_Server":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def _close():
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(_close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def _serve(self, reader, writer) -> None:
        try:
            while (req := await _read_request(reader)) is not None:
                if not await self.handle(req, writer):
                    return
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @abc.abstractmethod
    async def handle(self, req, writer) -> bool:
        """Answer one request; False closes the connection."""


def chat_completion(content: str, prompt_tokens: int, completion_tokens: int, model: str = "loopback",
                    reasoning_content: str | None = None) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    if reasoning_content is not None:
        message["reasoning_content"] = reasoning_content
    return {
        "id": "chatcmpl-loopback", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


class FixedLatencyServer(_Server):
    """Every chat completion is `content` after `latency_s`; usage is 10 + 5 tokens. With `slots`,
    at most that many are worked on at once and the rest queue, like a vLLM replica's batch
    (`max_num_seqs`): one replica then has a ceiling of slots / latency_s answers a second."""

    def __init__(self, latency_s: float = 0.2, content: str = '{"label": "positive"}', port: int = 0,
                 reasoning_content: str | None = None, slots: int | None = None):
        super().__init__(port)
        self.latency_s, self.content, self.requests, self.slots = latency_s, content, 0, slots
        self._body = json.dumps(chat_completion(content, 10, 5, reasoning_content=reasoning_content)).encode()
        self._busy: asyncio.Semaphore | None = None

    async def handle(self, req, writer) -> bool:
        if self.slots is None:
            await asyncio.sleep(self.latency_s)
        else:
            self._busy = self._busy or asyncio.Semaphore(self.slots)
            async with self._busy:
                await asyncio.sleep(self.latency_s)
        self.requests += 1
        writer.write(_response(200, self._body))
        return True


class RecordingServer(_Server):
    """Records every request body it receives (`bodies`) and answers each chat completion
    with `answer(request)` (the parsed request; a JSON string back); usage is 10 + 5 tokens.
    For checking what a teacher really receives (masking, audit)."""

    def __init__(self, answer, port: int = 0):
        super().__init__(port)
        self.answer, self.bodies = answer, []

    async def handle(self, req, writer) -> bool:
        body = req[3]
        self.bodies.append(body)
        content = self.answer(json.loads(body))
        writer.write(_response(200, json.dumps(chat_completion(content, 10, 5)).encode()))
        return True


class FaultProxy(_Server):
    """Forwards to `upstream` (a /v1 base URL), injecting `faults[i]` into the i-th request.

    Faults: "429" (Retry-After: `retry_after`), any other status code ("500", "401"), "hang"
    (never answers), "garbage"
    (200 with a body that is not JSON), "reset" (the TCP connection is reset). Anything
    else, or past the end of the list, passes through. `delivered` holds the usage of every
    upstream reply handed back in full; `log` the fault applied to each request."""

    def __init__(self, upstream: str, faults: list[str] | None = None, retry_after: float = 1, port: int = 0):
        super().__init__(port)
        self.upstream, self.faults, self.retry_after = upstream.rstrip("/"), list(faults or []), retry_after
        self.log: list[str] = []
        self.delivered: list[dict[str, int]] = []
        self._client: httpx.AsyncClient | None = None

    async def handle(self, req, writer) -> bool:
        method, path, headers, body = req
        fault = self.faults[len(self.log)] if len(self.log) < len(self.faults) else "pass"
        self.log.append(fault)
        if fault == "429":
            writer.write(_response(429, b'{"error": {"message": "rate limited"}}', {"Retry-After": str(self.retry_after)}))
        elif fault.isdigit():  # any other status: "500", "503", "401", ...
            writer.write(_response(int(fault), b'{"error": {"message": "injected fault"}}'))
        elif fault == "garbage":
            writer.write(_response(200, b'{"choices": [ <html>502 Bad Gateway</html>'))
        elif fault == "hang":
            await asyncio.sleep(3600)
        elif fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        else:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=600)
            prefix = "/v1"
            sub = path[len(prefix):] if path.startswith(prefix) else path
            fwd = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
            resp = await self._client.request(method, self.upstream + sub, content=body, headers=fwd)
            writer.write(_response(resp.status_code, resp.content))
            await writer.drain()
            if resp.status_code == 200:
                try:
                    usage = resp.json().get("usage") or {}
                    self.delivered.append({"prompt_tokens": usage.get("prompt_tokens", 0),
                                           "completion_tokens": usage.get("completion_tokens", 0)})
                except ValueError:
                    pass
        return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fixed", help="a fixed-latency endpoint")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--latency", type=float, default=0.2)
    p.add_argument("--slots", type=int, default=None, help="requests worked on at once (default: no limit)")
    args = parser.parse_args(argv)
    server = FixedLatencyServer(args.latency, port=args.port, slots=args.slots).start()
    print(f"serving {server.url} (latency {args.latency}s, slots {args.slots or 'unlimited'}); Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
