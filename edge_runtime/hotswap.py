"""Hot swap: `serve` moves to a new bundle without dropping a request (issue #18, "promotion
only when better"; `edge-runtime compare` decides, this applies it).

Triggered by `POST /admin/reload` (with the `X-Admin-Token` the operator started `serve` with,
`--admin-token-env NAME`; optional body `{"bundle": PATH}`, else the path it was started with)
or by SIGHUP (the start path again: replace the bundle there, then signal). The new bundle is
loaded and verified and its model slots built while the old one keeps serving; then, in one
step on the event loop, new requests go to the new slots, router and answer cache. Requests
that already hold or wait for an old slot finish on the old model; the old slots are closed
once the last of them is done. A bundle that fails to load, or answers another task, is
refused and the old one keeps serving. The request log carries on in the same files (its
records name the bundle that answered); the answer cache and drift window start afresh.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

log = logging.getLogger("edge_runtime.hotswap")
ADMIN_HEADER = "x-admin-token"
RETIRE_POLL_S = 0.05


def admin_allowed(headers, token: str | None) -> bool:
    """The request carries the admin token (compared in constant time); never without one set."""
    given = headers.get(ADMIN_HEADER, "")
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


async def retire(slots, name: str = "old bundle") -> None:
    """Close `slots` once no request holds or waits for one of them (the old bundle's
    in-flight work finishes first)."""
    while slots.waiting or slots.active:
        await asyncio.sleep(RETIRE_POLL_S)
    await asyncio.to_thread(slots.close)
    log.info("hot swap: %s closed", name)
