"""The offline server: OpenAI-compatible completions, a task endpoint with validated
answers and confidence, health and Prometheus metrics.

The model runs one request per slot (a llama.cpp context); requests wait in a bounded
queue and get 429 when it is full, 504 when no slot frees up in time (the queue wait
timeout) or when generation runs past its deadline (the generation timeout: llama.cpp is
stopped, the slot freed). Bodies are counted as they arrive, chunked ones included, and
refused with 413 past the limit. Bad input of any kind gets a 4xx with a message and the
server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from edge_runtime import layout
from edge_runtime.budget import server_budget
from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.production import ProductionLoop
from edge_runtime.router import Router, operator_teacher, suggested_teacher
from edge_runtime.security import BodyLimit, HostPolicy, RequestGuard, authorised, body_limit_message, install_error_handlers
from edge_runtime.structured import ResponseFormatError, chat_prompt, schema_of
from edge_runtime.server_settings import DEFAULTS, ServerSettings
from edge_runtime.uploads import OcrGate


# ---- request bodies ----------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Sampling(_Body):
    """What the OpenAI completion and chat requests share."""

    model: str = ""
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: list[str] | str | None = None
    seed: int | None = None
    stream: bool = False
    response_format: dict[str, Any] | None = None  # text | json_object | json_schema (edge_runtime/structured.py)


class CompletionRequest(_Sampling):
    prompt: str = Field(..., max_length=200_000)
    max_tokens: int = Field(16, ge=1, le=4096)


class Message(_Body):
    role: Literal["system", "user", "assistant"]
    content: str = Field(..., max_length=200_000)


class ChatRequest(_Sampling):
    messages: list[Message] = Field(..., min_length=1, max_length=256)
    max_tokens: int = Field(64, ge=1, le=4096)


class TaskRequest(_Body):
    input: str | list[str] = Field(..., description="the task input: text, or a list of OCR lines")
    context: str = Field("", max_length=100_000, description="retrieved FAQ candidates for faq tasks")


# ---- metrics -----------------------------------------------------------------------
class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry()
        self.requests = Counter("edge_requests", "HTTP requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("edge_request_latency_seconds", "request latency", ["endpoint"], registry=r,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64))
        self.tokens = Counter("edge_tokens", "tokens processed", ["kind"], registry=r)
        self.answers = Counter("edge_task_answers", "task answers by schema validity", ["valid"], registry=r)
        self.valid_rate = Gauge("edge_schema_valid_ratio", "share of task answers that are schema-valid", registry=r)
        self.escalations = Counter("edge_escalations", "requests answered by the teacher", registry=r)
        self.teacher_failures = Counter("edge_teacher_failures", "escalations that failed (student answer kept)", registry=r)
        self.cost = Counter("edge_escalation_cost_usd", "teacher cost of escalations", registry=r)
        self.queue = Gauge("edge_queue_depth", "requests waiting for or holding a slot", registry=r)
        self.timeouts = Counter("edge_timeouts", "requests stopped by a timeout: queue wait or generation",
                                ["kind"], registry=r)
        self.answer_tokens = Counter("edge_answer_tokens", "task answer tokens by how they were decided: forced by "
                                     "the schema, copied (drafted from the prompt and verified) or sampled", ["source"], registry=r)
        self.draft_tokens = Counter("edge_draft_tokens", "prompt-lookup draft tokens, proposed and accepted",
                                    ["outcome"], registry=r)
        self.acceptance = Gauge("edge_draft_acceptance_ratio", "accepted / proposed draft tokens since start", registry=r)
        self._valid = self._total = 0
        self._proposed = self._accepted = 0

    def answer(self, valid: bool, decode: dict[str, Any] | None = None) -> None:
        self._total += 1
        self._valid += int(valid)
        self.answers.labels(valid=str(valid).lower()).inc()
        self.valid_rate.set(self._valid / self._total)
        if decode:
            for source in ("forced", "copied", "sampled"):
                self.answer_tokens.labels(source=source).inc(decode.get(source, 0))
            self.draft_tokens.labels(outcome="proposed").inc(decode.get("drafted", 0))
            self.draft_tokens.labels(outcome="accepted").inc(decode.get("copied", 0))
            self._proposed += decode.get("drafted", 0)
            self._accepted += decode.get("copied", 0)
            if self._proposed:
                self.acceptance.set(self._accepted / self._proposed)


# ---- slots and the bounded queue ---------------------------------------------------
class Slots:
    """A pool of predictors, each with its own worker thread; at most `max_queue` requests wait
    for one.

    All of a slot's model work runs on that slot's one thread. llama.cpp's per-request buffers
    then come from one malloc arena per slot, instead of one arena per pool thread that
    happened to run a request (about 60 MiB each with Gemma's 262k vocabulary: resident
    memory that grew with concurrency). And a slot's work never overlaps: a slot is released
    on its own thread, after whatever runs there, even when the awaiting request is gone."""

    def __init__(self, predictors: list[Any], max_queue: int, timeout_s: float, metrics: Metrics):
        from concurrent.futures import ThreadPoolExecutor

        self.free: asyncio.Queue = asyncio.Queue()
        for p in predictors:
            self.free.put_nowait(p)
        self.predictors = predictors
        self.threads = {id(p): ThreadPoolExecutor(1, thread_name_prefix=f"edge-{getattr(p, 'name', 'slot')}")
                        for p in predictors}
        self.max_queue, self.timeout_s, self.metrics = max_queue, timeout_s, metrics
        self.waiting = self.active = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    async def acquire(self):
        if self.waiting >= self.max_queue:
            raise HTTPException(429, f"queue full ({self.max_queue} waiting); retry later")
        self.loop = asyncio.get_running_loop()
        self.waiting += 1
        self._gauge()
        try:
            pred = await asyncio.wait_for(self.free.get(), self.timeout_s)
        except asyncio.TimeoutError:
            self.metrics.timeouts.labels(kind="queue").inc()
            raise HTTPException(504, (
                f"queue wait timeout: no model slot became free within {self.timeout_s:g}s (the request never "
                f"started generating); retry later, or raise it with `edge-runtime serve --queue-timeout SECONDS`"
            )) from None
        finally:
            self.waiting -= 1
        self.active += 1
        self._gauge()
        return pred

    async def run(self, pred, fn, *args):
        """`fn(*args)` on the slot's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.threads[id(pred)], partial(fn, *args))

    def release(self, pred, before=None) -> None:
        """Free the slot once its thread has finished what it runs (and `before()`, e.g. closing a
        stream's generator there)."""
        def _put():
            self.active -= 1
            self.free.put_nowait(pred)
            self._gauge()

        def _on_thread():
            try:
                if before is not None:
                    before()
            finally:
                self.loop.call_soon_threadsafe(_put)

        if self.loop is not None:
            self.threads[id(pred)].submit(_on_thread)

    def close(self) -> None:
        for ex in self.threads.values():
            ex.shutdown(wait=True)
        for p in self.predictors:
            p.close()

    def _gauge(self) -> None:
        self.metrics.queue.set(self.waiting + self.active)


# ---- the app -----------------------------------------------------------------------
def create_app(bundle: Bundle | str | Path, settings: ServerSettings = DEFAULTS) -> FastAPI:
    """A FastAPI app serving one verified bundle, run as `settings` says (each field is described
    in `edge_runtime.server_settings`). The queue wait and generation timeouts are read per
    request from `app.state.slots.timeout_s` and `app.state.request_timeout_s`."""
    from edge_runtime.engines import bundle_predictor
    from edge_runtime.engines.llamacpp import GenerationTimeout

    bundle_path = bundle.root if isinstance(bundle, Bundle) else Path(bundle)  # what a reload reads by default
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    task, gen = bundle.task, bundle.generation
    metrics = Metrics()
    s = settings
    teacher = operator_teacher(bundle.generation, s.teacher_url, s.teacher_model, s.teacher_key_env,
                               s.teacher_price_input_per_m, s.teacher_price_output_per_m, **(s.teacher_privacy or {}))
    budget = server_budget(teacher, s.escalation_max_per_hour, s.escalation_max_usd_per_hour, metrics.registry)
    n_slots = s.parallel or int(gen.get("parallel", layout.PARALLEL))

    def slot_predictors(b: Bundle) -> list:
        return [bundle_predictor(b, name=f"slot{i}", n_threads=s.n_threads, prefix_reuse=s.prefix_reuse,
                                 decoding=s.decoding, n_gpu_layers=s.gpu_layers) for i in range(n_slots)]

    predictors = slot_predictors(bundle)
    router = Router(task, float(gen.get("confidence_threshold", layout.CONFIDENCE_THRESHOLD)), teacher, budget)
    if teacher is None and suggested_teacher(gen):
        import logging

        logging.getLogger("edge_runtime.server").warning(
            "the bundle suggests escalating to %s; escalation is off until you enable it with "
            "`edge-runtime serve --teacher-url URL [--teacher-key-env NAME]`", suggested_teacher(gen))
    slots = Slots(predictors, s.max_queue, s.timeout_s, metrics)
    app = FastAPI(title="edge-runtime", version="1", description=f"Serves task {task.name!r} ({task.kind}) offline.")
    app.state.bundle, app.state.slots, app.state.router, app.state.metrics = bundle, slots, router, metrics
    app.state.request_timeout_s = s.request_timeout_s
    app.state.ocr = ocr = OcrGate(slots, metrics.registry, s.max_image_pixels)
    app.state.loop = production = ProductionLoop(bundle, router, s.loop, metrics.registry)
    model_id = app.state.model_id = bundle.manifest["model"]

    # Innermost: Host, Origin, Content-Type and strict JSON, for every route; inside the body
    # limit, so reading the body there still counts against it.
    app.add_middleware(RequestGuard, policy=HostPolicy(s.host, s.allowed_hosts), upload_prefixes=("/v1/tasks/",))
    # Inside `guard` (added before it, so inner): the 413 then rises within the app's own read of
    # the body, where the exception handler answers it; `guard` still counts it.
    app.add_middleware(BodyLimit, max_bytes=s.max_body_bytes)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        endpoint = request.url.path if not request.url.path.startswith("/v1/tasks/") else "/v1/tasks"
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > s.max_body_bytes):
            msg = body_limit_message(s.max_body_bytes) if length.isdigit() else f"bad Content-Length {length[:40]!r}"
            resp = JSONResponse({"error": msg}, 413)
        elif s.api_key and request.url.path not in ("/healthz", "/openapi.json") and not authorised(request.headers, s.api_key):
            resp = JSONResponse({"error": "missing or wrong API key: send Authorization: Bearer <key>"}, 401)
        else:
            try:
                resp = await call_next(request)
            except Exception as exc:  # a bug, not the client's fault: still answered in JSON, and counted
                import logging

                logging.getLogger("edge_runtime.server").exception("unhandled error on %s", request.url.path)
                resp = JSONResponse({"error": f"internal error ({exc.__class__.__name__}); the server keeps serving"}, 500)
        metrics.requests.labels(endpoint=endpoint, status=str(resp.status_code)).inc()
        metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)
        return resp

    install_error_handlers(app)  # every refusal is JSON with an `error`

    def timed_out(exc: GenerationTimeout) -> HTTPException:
        metrics.timeouts.labels(kind="generation").inc()
        return HTTPException(504, (
            f"generation timeout: {exc}; the model was stopped and serves the next request. Ask for fewer "
            f"tokens, or raise the limit with `edge-runtime serve --request-timeout SECONDS` "
            f"(this is not the queue wait timeout, --queue-timeout)"))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "task": task.name, "kind": task.kind, "model": model_id,
                "slots": len(predictors), "queue": slots.waiting + slots.active}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus():
        from prometheus_client import generate_latest

        return PlainTextResponse(generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "owned_by": "edge-runtime"}]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        kw = dict(max_tokens=min(body.max_tokens, s.max_tokens_cap or body.max_tokens), temperature=body.temperature, top_p=body.top_p, stop=body.stop, seed=body.seed)
        kw["timeout_s"] = app.state.request_timeout_s
        if (schema := _structured(body)) is not None:
            return await _generate(lambda p: p.complete_json(body.prompt, schema, **kw), None, False)
        return await _generate(lambda p: p.complete(body.prompt, **kw), lambda p: p.stream(body.prompt, **kw), body.stream)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        msgs = [m.model_dump() for m in body.messages]
        kw = dict(max_tokens=min(body.max_tokens, s.max_tokens_cap or body.max_tokens), temperature=body.temperature, top_p=body.top_p, stop=body.stop, seed=body.seed,
                  timeout_s=app.state.request_timeout_s)

        if (schema := _structured(body)) is not None:
            def run_json(p):
                prompt, special = chat_prompt(p.llm, msgs, plain_chat_prompt(msgs))
                return _as_chat(p.complete_json(prompt, schema, special=special, **kw))

            return await _generate(run_json, None, False)

        def templated(p) -> bool:
            return bool(p.llm.metadata.get("tokenizer.chat_template"))

        def run(p):
            if templated(p):
                return p.chat(msgs, **kw)
            return _as_chat(p.complete(plain_chat_prompt(msgs), **kw))

        def stream(p):
            if templated(p):
                yield from p.chat(msgs, stream=True, **kw)
                return
            first = True
            for chunk in p.stream(plain_chat_prompt(msgs), **kw):
                yield _as_chat_chunk(chunk, first)
                first = False

        return await _generate(run, stream, body.stream)

    def _structured(body) -> dict[str, Any] | None:
        try:
            return schema_of(body.response_format, body.stream)
        except ResponseFormatError as exc:
            raise HTTPException(400, str(exc)) from exc

    async def in_slot(fn, *args, too_long: str):
        """Wait for a slot, run `fn(slot, *args)` on its thread, free it; a generation timeout is a
        504, a prompt longer than the context a 413, another ValueError a 400 (`slot_error`)."""
        slots = app.state.slots  # the pool this request started in, even across a hot swap
        pred = await slots.acquire()
        try:
            return await slots.run(pred, fn, pred, *args)
        except GenerationTimeout as exc:
            raise timed_out(exc) from exc
        except ValueError as exc:
            raise slot_error(exc, too_long) from exc
        finally:
            slots.release(pred)

    async def _generate(run, stream, streaming: bool):
        slots = app.state.slots  # the pool this request started in, even across a hot swap
        if not streaming:
            out = await in_slot(run, too_long="shorten the prompt or max_tokens")
            out["model"] = model_id
            _count_tokens(out.get("usage") or {})
            return out

        pred = await slots.acquire()
        chunks = stream(pred)
        try:  # the first chunk before the 200: a prompt over the context is a 413, not an empty stream
            first = await slots.run(pred, next, chunks, None)
        except BaseException as exc:
            slots.release(pred, before=chunks.close)
            if isinstance(exc, GenerationTimeout):
                raise timed_out(exc) from exc
            if isinstance(exc, ValueError):
                raise slot_error(exc, "shorten the prompt or max_tokens") from exc
            raise

        async def events():
            chunk = first
            try:
                while chunk is not None:
                    chunk["model"] = model_id
                    yield f"data: {json.dumps(chunk)}\n\n"
                    chunk = await slots.run(pred, next, chunks, None)
                yield "data: [DONE]\n\n"
            except GenerationTimeout as exc:  # the 200 is sent already: end with an error event, as OpenAI does
                err = timed_out(exc)
                yield f"data: {json.dumps({'error': {'message': err.detail, 'type': 'timeout', 'code': 504}})}\n\n"
            except Exception as exc:  # any other failure mid-stream reaches the client too
                err = slot_error(exc, "shorten the prompt or max_tokens") if isinstance(exc, ValueError) else \
                    HTTPException(500, f"generation failed ({exc.__class__.__name__})")
                yield f"data: {json.dumps({'error': {'message': err.detail, 'type': 'error', 'code': err.status_code}})}\n\n"
            finally:  # also when the client went away mid-stream: llama.cpp stops on the slot's thread
                slots.release(pred, before=chunks.close)

        return StreamingResponse(events(), media_type="text/event-stream")

    def _count_tokens(usage: dict[str, Any]) -> None:
        metrics.tokens.labels(kind="prompt").inc(usage.get("prompt_tokens", 0))
        metrics.tokens.labels(kind="completion").inc(usage.get("completion_tokens", 0))

    @app.post("/v1/tasks/{name}")
    async def run_task(name: str, request: Request):
        # one bundle for the whole request, even when a hot swap happens while it runs
        task, router, production, model_id = app.state.bundle.task, app.state.router, app.state.loop, app.state.model_id
        if name != task.name:
            raise HTTPException(404, f"unknown task {name!r}; this server serves {task.name!r}")
        start = time.perf_counter()
        example, extra = await _task_input(request)
        context = extra.pop("context", "")
        key = production.cache_key(example, context)
        body, model_s = production.lookup(key), 0.0
        if body is None:
            pred = await in_slot(lambda slot, *a: slot.predict(*a), example, context,
                                 app.state.request_timeout_s, too_long="the input is too long for this bundle's context")
            metrics.answer(pred.valid, pred.extra.get("decode"))
            _count_tokens({"prompt_tokens": pred.prompt_tokens, "completion_tokens": pred.completion_tokens})
            before = (router.stats.escalations, router.stats.teacher_failures, router.stats.cost_usd)
            body = await asyncio.to_thread(router.route, example, pred)
            metrics.escalations.inc(router.stats.escalations - before[0])
            metrics.teacher_failures.inc(router.stats.teacher_failures - before[1])
            metrics.cost.inc(max(0.0, router.stats.cost_usd - before[2]))
            production.store(key, body, pred.latency_s)
            model_s = pred.latency_s
        out = {"id": f"task-{uuid.uuid4().hex[:12]}", "task": task.name, "model": model_id,
               "latency_s": round(model_s, 4), **extra, **body}
        production.after(out, example, time.perf_counter() - start)
        return out

    async def _task_input(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            if task.kind != "extraction":
                raise HTTPException(415, f"task {task.name!r} ({task.kind}) takes JSON, not images")
            lines = await ocr.lines(request, app.state.request_timeout_s)
            return {task.input_field: lines}, {"ocr_lines": lines}
        try:
            raw = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
            raise HTTPException(400, f"body is not valid JSON ({exc}); send {{\"input\": ...}}") from exc
        if isinstance(raw, dict) and "input" not in raw and task.input_field in raw:
            raw = {"input": raw[task.input_field], "context": raw.get("context", "")}
        try:
            req = TaskRequest.model_validate(raw)
        except Exception as exc:
            raise HTTPException(422, f"bad task request: {exc}".replace("\n", " ")) from exc
        size = len(req.input) if isinstance(req.input, str) else sum(len(s) for s in req.input)
        if size == 0:
            raise HTTPException(422, "`input` is empty")
        if size > 100_000:
            raise HTTPException(413, f"`input` has {size} characters; the limit is 100000")
        return {task.input_field: req.input}, {"context": req.context}

    swap_lock = asyncio.Lock()

    async def reload(path: str | Path | None = None) -> dict[str, Any]:
        """Move to the bundle at `path` (default: the start path) without dropping a request
        (`edge_runtime.hotswap`); a bundle that fails to load is refused and the old one serves on."""
        nonlocal bundle, task, gen, slots, router, production, model_id, predictors
        from edge_runtime.compare import same_task
        from edge_runtime.hotswap import retire

        async with swap_lock:
            new = await asyncio.to_thread(load_bundle, path or bundle_path)
            same_task(bundle, new)
            new_predictors = await asyncio.to_thread(slot_predictors, new)
            new_router = Router(new.task, float(new.generation.get("confidence_threshold", layout.CONFIDENCE_THRESHOLD)),
                                teacher, budget)
            new_slots = Slots(new_predictors, s.max_queue, slots.timeout_s, metrics)
            old_slots, old_id = slots, production.bundle_id
            # one step on the event loop: every request from here on gets the new bundle
            production = production.handover(new, new_router, metrics.registry)
            bundle, task, gen, slots, router, predictors = new, new.task, new.generation, new_slots, new_router, new_predictors
            model_id = new.manifest["model"]
            app.state.bundle, app.state.slots, app.state.router, app.state.loop = bundle, slots, router, production
            app.state.model_id, ocr.slots = model_id, slots
            in_flight = old_slots.waiting + old_slots.active
            app.state.retiring = asyncio.ensure_future(retire(old_slots))
        return {"status": "swapped", "bundle": production.bundle_id, "previous": old_id,
                "path": str(path or bundle_path), "in_flight_on_previous": in_flight}

    app.state.reload = reload

    @app.post("/admin/reload")
    async def admin_reload(request: Request):
        from edge_runtime.hotswap import admin_allowed

        if not s.admin_token:
            raise HTTPException(404, "hot swap is off: start `edge-runtime serve` with --admin-token-env NAME "
                                     "(or --admin-token-file PATH) to turn on POST /admin/reload")
        if not admin_allowed(request.headers, s.admin_token):
            raise HTTPException(403, "missing or wrong admin token: send X-Admin-Token: <token>")
        raw = await request.body()
        try:
            target = (json.loads(raw) if raw.strip() else {}).get("bundle")
        except (json.JSONDecodeError, AttributeError) as exc:
            raise HTTPException(400, f'body must be {{"bundle": "PATH"}} or empty ({exc})') from exc
        if target is not None and (not isinstance(target, str) or not target.strip()):
            raise HTTPException(400, 'body must be {"bundle": "PATH"} or empty: "bundle" is a path string')
        try:
            return await reload(target)
        except Exception as exc:  # noqa: BLE001 - nothing was swapped: the old bundle keeps serving
            raise HTTPException(409, f"reload refused, still serving {production.bundle_id[:12]}: {exc}") from exc

    app.state.close = lambda: (production.close(), slots.close())  # the log's last batch, then the model
    return app


def slot_error(exc: ValueError, too_long: str) -> HTTPException:
    """What a ValueError from the model becomes: 413 when the prompt does not fit the context
    (llama.cpp's "exceed context window", the decoder's "context"), else 400 with the reason."""
    text = str(exc)
    if "context" in text.lower():
        return HTTPException(413, f"{text}; {too_long}")
    return HTTPException(400, f"the model could not take this request: {text}")


def plain_chat_prompt(messages: list[dict[str, str]]) -> str:
    """A chat for a model without a chat template (the toolkit's base students): one
    `Role: text` paragraph per message, then the assistant's turn."""
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(turns) + "\n\nAssistant:"


def _as_chat(out: dict[str, Any]) -> dict[str, Any]:
    choice = out["choices"][0]
    return {"id": "chat" + out["id"], "object": "chat.completion", "created": out["created"], "model": out.get("model", ""),
            "choices": [{"index": 0, "finish_reason": choice.get("finish_reason"),
                         "message": {"role": "assistant", "content": choice["text"].strip()}}],
            "usage": out.get("usage")}


def _as_chat_chunk(chunk: dict[str, Any], first: bool) -> dict[str, Any]:
    choice = chunk["choices"][0]
    delta = {"role": "assistant", "content": choice["text"]} if first else {"content": choice["text"]}
    return {"id": "chat" + chunk["id"], "object": "chat.completion.chunk", "created": chunk["created"],
            "model": chunk.get("model", ""), "choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]}


def serve(bundle: str | Path, settings: ServerSettings = DEFAULTS, port: int = 8080, *,
          insecure_no_key: bool = False) -> None:
    """Run the server until interrupted (what `edge-runtime serve` calls). A keyless server on
    a non-loopback address is refused unless `insecure_no_key` (see `security.check_bind`)."""
    import uvicorn

    from edge_runtime.security import check_bind

    check_bind(settings.host, settings.api_key, insecure_no_key)
    app = create_app(bundle, settings)
    reload_on_sighup(app)
    try:
        uvicorn.run(app, host=settings.host, port=port, log_level="warning")
    finally:
        app.state.loop.close()  # the request log's last batch


def reload_on_sighup(app) -> None:
    """SIGHUP hot-swaps to the bundle at the start path (replace it there, then signal);
    see `edge_runtime.hotswap`. The handler only schedules the swap on the server's loop."""
    import logging
    import signal

    log = logging.getLogger("edge_runtime.hotswap")

    async def swap() -> None:
        try:
            log.warning("SIGHUP: %s", await app.state.reload())
        except Exception as exc:  # a bad bundle: the old one serves on
            log.error("SIGHUP: reload refused, the previous bundle serves on: %s", exc)

    def on_hup(signum, frame) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the server's loop is not running yet (or any more)
            return
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(swap()))

    signal.signal(signal.SIGHUP, on_hup)
