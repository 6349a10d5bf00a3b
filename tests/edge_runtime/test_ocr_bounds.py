"""Issue #15 bug 7: image uploads are bounded like generation (slots, queue, pixel limit, timeout),
and an image is decoded once, at a bounded size. Real image files, a real server on loopback."""

from __future__ import annotations

import asyncio
import io
import re
import struct
import zlib

import httpx
import pytest

from edge_runtime.ocr import MAX_SIDE, ImageTooLarge, decode_image, image_size
from tests.edge_runtime.conftest import FIXTURES, LiveServer
from edge_runtime.server_settings import ServerSettings

LIMIT = 4_000_000


def png_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), 255).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (250, 250, 250)).save(buf, "JPEG", quality=50)
    return buf.getvalue()


def bomb_png(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header that declares width x height pixels, with a few bytes of data: what a
    decompression bomb looks like before anyone decodes it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_large_photo_is_decoded_at_a_bounded_size():
    array = decode_image(jpeg_bytes(6000, 4000))
    assert max(array.shape[:2]) <= MAX_SIDE and array.shape[2] == 3 and array.flags["C_CONTIGUOUS"]
    array = decode_image(png_bytes(3000, 200))
    assert array.shape[:2] == (133, 2000)  # aspect kept
    small = (FIXTURES / "receipt-000.jpg").read_bytes()
    assert decode_image(small).shape[:2] == (1013, 463)  # below the bound: untouched


def test_a_decompression_bomb_is_refused_from_its_header():
    with pytest.raises(ImageTooLarge, match="40,000,000 pixels"):
        image_size(bomb_png())
    with pytest.raises(ImageTooLarge, match="3,600,000,000"):
        decode_image(bomb_png(), max_pixels=40_000_000)
    with pytest.raises(ImageTooLarge, match="--max-image-pixels"):
        image_size(png_bytes(2100, 2000), max_pixels=LIMIT)


@pytest.fixture(scope="module")
def ocr_server(receipts_bundle):
    from edge_runtime.server import create_app

    app = create_app(receipts_bundle, ServerSettings(n_threads=2, parallel=1, timeout_s=2, max_image_pixels=LIMIT))
    with LiveServer(app) as live:
        yield live


def post_image(live, data: bytes, name: str = "r.png", timeout: float = 300) -> httpx.Response:
    return httpx.post(live.url + "/v1/tasks/receipts", files={"image": (name, data, "image/png")}, timeout=timeout)


def metric(live, name: str) -> float:
    text = httpx.get(live.url + "/metrics", timeout=10).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_images_over_the_pixel_limit_are_413_naming_the_limit(ocr_server):
    r = post_image(ocr_server, png_bytes(2100, 2000))  # 4.2 MP against a 4 MP limit
    assert r.status_code == 413, r.text
    assert "4,000,000 pixels" in r.json()["error"] and "--max-image-pixels" in r.json()["error"]
    r = post_image(ocr_server, bomb_png())
    assert r.status_code == 413 and "3,600,000,000" in r.json()["error"]
    assert metric(ocr_server, 'edge_ocr_images_total{outcome="too_large"}') == 2
    assert metric(ocr_server, "edge_ocr_seconds_count") == 0  # refused before OCR ran
    assert httpx.get(ocr_server.url + "/healthz", timeout=10).json()["status"] == "ok"


def test_ocr_waits_in_the_slot_queue(ocr_server):
    """OCR needs a model slot: with the only slot held, an upload waits in the queue (504 after
    the queue timeout, OCR never ran) or is refused when the queue is full (429)."""
    receipt = (FIXTURES / "receipt-000.jpg").read_bytes()
    r = post_image(ocr_server, receipt, "r.jpg")
    assert r.status_code == 200, r.text
    assert any("JOHOR" in line.upper() for line in r.json()["ocr_lines"])
    ran = metric(ocr_server, "edge_ocr_seconds_count")
    assert ran == 1

    slots = ocr_server.app.state.slots
    held = asyncio.run_coroutine_threadsafe(slots.acquire(), slots.loop).result(10)  # as a long generation would
    try:
        r = post_image(ocr_server, receipt, "r.jpg", timeout=60)
        assert r.status_code == 504 and "queue wait timeout" in r.json()["error"], r.text
        slots.max_queue, queue = 0, slots.max_queue
        try:
            r = post_image(ocr_server, receipt, "r.jpg", timeout=60)
            assert r.status_code == 429 and "queue full" in r.json()["error"], r.text
        finally:
            slots.max_queue = queue
        assert metric(ocr_server, "edge_ocr_seconds_count") == ran  # OCR did not run beside the held slot
    finally:
        slots.loop.call_soon_threadsafe(slots.release, held)
    assert post_image(ocr_server, receipt, "r.jpg").status_code == 200


def test_ocr_past_the_request_timeout_is_504(ocr_server):
    app = ocr_server.app
    receipt = (FIXTURES / "receipt-000.jpg").read_bytes()
    app.state.request_timeout_s, before = 0.001, app.state.request_timeout_s
    try:
        r = post_image(ocr_server, receipt, "r.jpg", timeout=60)
    finally:
        app.state.request_timeout_s = before
    assert r.status_code == 504, r.text
    assert "OCR timeout" in r.json()["error"] and "--request-timeout" in r.json()["error"]
    assert metric(ocr_server, 'edge_ocr_images_total{outcome="timeout"}') == 1
    assert metric(ocr_server, 'edge_timeouts_total{kind="ocr"}') == 1
    for _ in range(30):  # the slot comes back once the timed-out OCR has finished (slower on a loaded machine)
        r = post_image(ocr_server, receipt, "r.jpg")
        if r.status_code != 504 or "queue wait timeout" not in r.text:
            break
    assert r.status_code == 200, r.text
