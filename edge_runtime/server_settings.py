"""How the server runs a bundle, as one object: `create_app` and `serve` take a ServerSettings
instead of two dozen keywords, and `edge-runtime serve`'s flags take their defaults from it, so
each default is written here only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge_runtime.ocr import MAX_PIXELS

if TYPE_CHECKING:  # the loop's modules are not needed to read the defaults (`edge-runtime --help`)
    from edge_runtime.production import LoopSettings

DEFAULT_MAX_BODY = 8 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class ServerSettings:
    # who may ask (edge_runtime.security)
    host: str = "127.0.0.1"  # the address the server is bound to; the Host check allows it
    allowed_hosts: tuple[str, ...] = ()  # more names the Host check answers to
    api_key: str | None = None  # required as `Authorization: Bearer` on every route but /healthz
    admin_token: str | None = None  # turns on POST /admin/reload, the hot swap (edge_runtime.hotswap)
    # limits
    max_queue: int = 16  # waiting requests before 429
    timeout_s: float = 120.0  # queue wait: seconds to wait for a free slot before 504
    request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT  # seconds one request may generate; None: no limit
    max_body_bytes: int = DEFAULT_MAX_BODY  # larger bodies get 413, chunked ones included
    max_tokens_cap: int | None = None  # clamps a client's max_tokens (a small device should not make 4096)
    max_image_pixels: int = MAX_PIXELS  # uploads declaring more are refused (413) before decoding
    # the model
    parallel: int | None = None  # slots (llama.cpp contexts); default: the bundle's
    n_threads: int | None = None
    prefix_reuse: bool = True  # keep the shared prompt prefix in each slot's KV cache
    decoding: dict[str, Any] | None = None  # overrides the bundle's decoding settings (speculation, draft length)
    gpu_layers: int | None = None  # layers offloaded to the GPU; default: the bundle's profile's
    # escalation: on only when teacher_url is given (the bundle's teacher is a suggestion, router.operator_teacher)
    teacher_url: str | None = None
    teacher_model: str | None = None
    teacher_key_env: str | None = None  # the operator's variable holding the key, never the bundle's
    teacher_price_input_per_m: float | None = None  # USD per million tokens; default: edge_runtime/prices.yaml
    teacher_price_output_per_m: float | None = None
    teacher_privacy: dict[str, Any] | None = None  # masking, local hosts, audit log (operator_teacher's keywords)
    escalation_max_per_hour: int | None = None  # teacher budget over a sliding hour (edge_runtime.budget)
    escalation_max_usd_per_hour: float | None = None
    # the request log, answer cache, drift and shadow settings (edge_runtime.production)
    loop: LoopSettings | None = None


DEFAULTS = ServerSettings()
