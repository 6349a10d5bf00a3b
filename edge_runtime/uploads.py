"""Image uploads on `/v1/tasks/<task>`: OCR bounded like generation.

An image is checked before it is decoded (its header's pixel count against the limit: 413), then
read with OCR inside the server's slot machinery: it waits in the same bounded queue as a
generation request (429 when full, 504 when no slot frees in time) and runs on the slot's own
thread, so at most one OCR or generation runs per slot. The request timeout bounds the wait
for the OCR result (504); OCR cannot be stopped midway, so the slot is freed only once it has
finished, and the next request waits for that rather than piling onto the CPU.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import HTTPException, Request

from edge_runtime.ocr import MAX_PIXELS, ImageTooLarge, NotAnImage, image_size, ocr_lines


class OcrGate:
    """Reads the image of a multipart task request into OCR lines through `slots`."""

    def __init__(self, slots: Any, registry: Any, max_pixels: int = MAX_PIXELS):
        from prometheus_client import Counter, Histogram

        self.slots, self.max_pixels = slots, int(max_pixels)
        self.images = Counter("edge_ocr_images", "uploaded images by outcome: ok, no_text, too_large, "
                              "not_an_image, timeout", ["outcome"], registry=registry)
        self.seconds = Histogram("edge_ocr_seconds", "time OCR ran on a slot", registry=registry,
                                 buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32))

    async def lines(self, request: Request, timeout_s: float | None) -> list[str]:
        data = await self._upload(request)
        try:
            image_size(data, self.max_pixels)  # header only: a bomb is refused before any decoding
        except ImageTooLarge as exc:
            self.images.labels(outcome="too_large").inc()
            raise HTTPException(413, str(exc)) from exc
        except NotAnImage as exc:
            self.images.labels(outcome="not_an_image").inc()
            raise HTTPException(415, str(exc)) from exc

        pred = await self.slots.acquire()  # 429 / 504 from the queue, like generation
        try:
            job = self.slots.run(pred, self._timed, data)
            lines = await asyncio.wait_for(job, timeout_s) if timeout_s else await job
        except asyncio.TimeoutError:
            self.images.labels(outcome="timeout").inc()
            self.slots.metrics.timeouts.labels(kind="ocr").inc()
            raise HTTPException(504, (
                f"OCR timeout: reading the image took longer than {timeout_s:g}s; send a smaller or clearer photo, "
                f"or raise the limit with `edge-runtime serve --request-timeout SECONDS`")) from None
        except NotAnImage as exc:  # corrupt past the header
            self.images.labels(outcome="not_an_image").inc()
            raise HTTPException(415, str(exc)) from exc
        finally:
            self.slots.release(pred)  # on the slot's thread: after OCR has really finished
        if not lines:
            self.images.labels(outcome="no_text").inc()
            raise HTTPException(422, "no text found in the image")
        self.images.labels(outcome="ok").inc()
        return lines

    def _timed(self, data: bytes) -> list[str]:
        with self.seconds.time():
            return ocr_lines(data, self.max_pixels)

    @staticmethod
    async def _upload(request: Request) -> bytes:
        try:
            form = await request.form()
        except HTTPException:
            raise  # the body limit
        except Exception as exc:
            raise HTTPException(400, f"malformed multipart body: {exc}") from exc
        upload = form.get("image") or form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, "multipart body needs an image file in the field `image`")
        return await upload.read()
