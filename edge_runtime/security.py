"""What the server accepts from a network it does not trust, for every route at once.

A local server is reachable from any web page its operator visits: a page may POST
`text/plain` or a form without asking (no CORS preflight), and a DNS name the page owns can
be re-pointed at 127.0.0.1 (DNS rebinding) so the page reads the answers. `RequestGuard`
closes that class of attack in one place:

- the `Host` header must name what the server was told to serve (421 otherwise): loopback
  names and addresses for a loopback bind, the bound address, any IP literal for a wildcard
  bind (a rebinding page always sends its own DNS name), and the operator's `--allowed-host`;
- a browser's `Origin`, when sent, must name an allowed host too (403): a cross-site form
  post of any content type is refused;
- a request with a body must be JSON (`application/json` or `+json`), or multipart on the
  upload routes (415 otherwise);
- a JSON body is parsed strictly before any route sees it: NaN, Infinity, numbers that
  overflow to infinity, lone UTF-16 surrogates and nesting deeper than `MAX_JSON_DEPTH` get
  400 with the problem named, never a 500.

`check_bind` refuses to start a keyless server on a non-loopback address unless the
operator says so explicitly (`--insecure-no-key`).
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable

from fastapi import HTTPException
from starlette.responses import JSONResponse

MAX_JSON_DEPTH = 64
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})


def body_limit_message(limit: int) -> str:
    return (f"request body too large: over the limit of {limit} bytes; send less, or raise the limit "
            f"with `edge-runtime serve --max-body BYTES` (ServerSettings(max_body_bytes=...))")


class BodyLimit:
    """ASGI middleware that counts request body bytes as they arrive, with or without a
    Content-Length (`Transfer-Encoding: chunked`), and refuses the request with 413 as soon
    as the count passes the limit: the chunk that crosses it is never handed on, so the
    app never holds more than the limit. The 413 is raised inside the app's own read of
    the body (`await request.body()`), where the exception handler turns it into JSON."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, body_limit_message(self.max_bytes))
            return message

        async def watched_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except HTTPException as exc:  # raised where no handler was in between
            if started or exc.status_code != 413:
                raise
            await JSONResponse({"error": exc.detail}, 413)(scope, receive, send)


class BadJSON(ValueError):
    """A JSON body the server will not take; the message says why and what to send."""


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def check_bind(host: str, api_key: str | None, insecure_no_key: bool = False) -> None:
    """Refuse a keyless server on an address other machines can reach."""
    if api_key or insecure_no_key or is_loopback(host):
        return
    raise ValueError(
        f"refusing to serve on {host!r} without an API key: anyone who can reach this address could run the "
        f"model and trigger paid escalations. Set a key (`--api-key-env NAME` or `--api-key-file PATH`), "
        f"bind 127.0.0.1, or pass --insecure-no-key if the network is yours alone")


def split_host(value: str) -> str:
    """The host part of a Host header or an Origin's authority, lower-cased, without port."""
    value = value.strip().lower()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0].rsplit("@", 1)[-1]
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


class HostPolicy:
    """Which Host names the server answers to (see the module docstring)."""

    def __init__(self, bind_host: str = "127.0.0.1", allowed: Iterable[str] = ()):
        bind = split_host(bind_host) if bind_host not in WILDCARDS else ""
        self.any = "*" in allowed
        self.names = {split_host(h) for h in allowed if h != "*"}
        self.names |= LOOPBACK_NAMES
        if bind:
            self.names.add(bind)
        self.any_ip = bind_host in WILDCARDS

    def allows(self, host: str) -> bool:
        if self.any:
            return True
        if not host:
            return False
        if host in self.names or (host.endswith(".localhost") and "localhost" in self.names):
            return True
        ip = _ip(host)
        return ip is not None and (ip.is_loopback or self.any_ip)

    def describe(self) -> str:
        extra = ", any IP address" if self.any_ip else ""
        return ", ".join(sorted(self.names)) + extra


def _reject_constant(name: str):
    raise BadJSON(f"{name} is not a JSON number; send a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise BadJSON(f"number {text[:40]} is too large for a 64-bit float; send a finite number")
    return value


def _check_tree(value) -> None:
    """Depth and string checks, iteratively (a deep tree must not recurse here either)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadJSON(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, str):
            _check_str(node)
        elif isinstance(node, dict):
            for k, v in node.items():
                _check_str(k)
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def _check_str(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJSON("a string holds a lone UTF-16 surrogate (e.g. \\ud800), which is not text; "
                      "send valid Unicode") from None


def strict_json(body: bytes):
    """`json.loads` that refuses what Python's parser lets through and the rest of the server
    cannot hold: NaN/Infinity, overflowing numbers, lone surrogates, deep nesting."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadJSON(f"body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except BadJSON:
        raise
    except RecursionError:
        raise BadJSON(f"JSON nested too deeply (the limit is {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # JSONDecodeError, and an integer past Python's digit limit
        raise BadJSON(f"body is not valid JSON ({exc})") from None
    _check_tree(value)
    return value


def media_type(headers: dict[bytes, bytes]) -> str:
    return headers.get(b"content-type", b"").decode("latin-1").split(";", 1)[0].strip().lower()


def is_json_type(mtype: str) -> bool:
    return mtype == "application/json" or (mtype.startswith("application/") and mtype.endswith("+json"))


class RequestGuard:
    """ASGI middleware applying the module's rules to every HTTP request. Inside the body
    limit: reading the body here still counts against it. `upload_prefixes` are the paths
    that also take multipart/form-data."""

    def __init__(self, app, policy: HostPolicy, upload_prefixes: tuple[str, ...] = ()):
        self.app, self.policy, self.upload_prefixes = app, policy, upload_prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = split_host(headers.get(b"host", b"").decode("latin-1"))
        if not self.policy.allows(host):
            status = 400 if not host else 421
            what = "no Host header" if not host else f"Host {host[:80]!r} is not served here"
            return await _error(status, f"{what}; this server answers to {self.policy.describe()}. If this name is "
                                f"yours, start the server with `--allowed-host {host[:80] or 'NAME'}`")(scope, receive, send)
        origin = headers.get(b"origin")
        if origin is not None:
            ohost = split_host(origin.decode("latin-1"))
            if not self.policy.allows(ohost) or origin.strip().lower() == b"null":
                return await _error(403, f"cross-site request from origin {origin.decode('latin-1')[:80]!r} refused; "
                                    f"a web page may not call this server (allow its host with --allowed-host)")(scope, receive, send)
        if scope["method"] not in BODY_METHODS:
            return await self.app(scope, receive, send)
        mtype = media_type(headers)
        upload = scope["path"].startswith(self.upload_prefixes) if self.upload_prefixes else False
        if upload and mtype == "multipart/form-data":
            return await self.app(scope, receive, send)
        if not is_json_type(mtype):
            takes = "application/json" + (" or multipart/form-data (an image upload)" if upload else "")
            return await _error(415, f"unsupported Content-Type {mtype or '(none)'!r}; this endpoint takes {takes}")(
                scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        if body:
            try:
                strict_json(body)
            except BadJSON as exc:
                return await _error(400, f"{exc}")(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def authorised(headers, key: str) -> bool:
    """The request's API key (`Authorization: Bearer KEY` or `X-API-Key`) is `key`, compared in constant time."""
    import hmac

    auth = headers.get("authorization", "")
    given = auth[7:] if auth.lower().startswith("bearer ") else headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode(), key.encode())


def install_error_handlers(app) -> None:
    """An HTTPException becomes `{"error": detail}`; a body that does not fit the route's model
    (a wrong type, a missing field, a value out of range) a 422 `{"error": "bad request body:
    <field>: <problem>; ...", "detail": [pydantic's errors]}` rather than FastAPI's bare `detail`."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_body(request, exc: RequestValidationError):
        errors = exc.errors()
        return JSONResponse({"error": validation_message(errors), "detail": jsonable_encoder(errors)}, 422)


def validation_message(errors) -> str:
    """One line naming each field pydantic refused and why (the first five)."""
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc[:80]}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "bad request body: " + "; ".join(parts) + more


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)
