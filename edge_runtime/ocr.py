"""OCR front end: a receipt or invoice photo to text lines in reading order, offline.

RapidOCR runs PP-OCR detection and recognition models on onnxruntime; its PyPI wheel
ships the models, so nothing is downloaded on the device. Boxes are grouped into rows
by vertical overlap and read left to right, matching how the task's OCR lines were made.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

MAX_PIXELS = 40_000_000  # the default refusal limit (`edge-runtime serve --max-image-pixels`)
MAX_SIDE = 2000  # RapidOCR's own max_side_len: it shrinks anything larger, so nothing is decoded larger


class NotAnImage(ValueError):
    """Uploaded bytes that are not a readable image."""


class ImageTooLarge(NotAnImage):
    """An image whose header declares more pixels than the limit (a decompression bomb or a huge scan)."""

    def __init__(self, pixels: int, limit: int, size: str = ""):
        self.pixels, self.limit = pixels, limit
        super().__init__(f"image is {size or 'declared as'} {pixels:,} pixels; the limit is {limit:,} pixels "
                         f"({limit / 1e6:g} megapixels). Send a smaller photo, or raise the limit with "
                         f"`edge-runtime serve --max-image-pixels N`")


def _open(data: bytes, max_pixels: int):
    """The image with only its header read (PIL decodes lazily); the size checked before any decoding."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise NotAnImage("empty upload; send a JPEG or PNG image")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # PIL's own guard (2x its MAX_IMAGE_PIXELS): header says huge
        raise ImageTooLarge(_declared_pixels(exc), max_pixels) from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise NotAnImage(f"not a readable image ({exc.__class__.__name__}); send a JPEG or PNG") from exc
    if img.width * img.height > max_pixels:
        img.close()
        raise ImageTooLarge(img.width * img.height, max_pixels, f"{img.width}x{img.height} =")
    return img


def _declared_pixels(exc: Exception) -> int:
    import re

    m = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (N pixels) exceeds limit of ..."
    return int(m.group(1)) if m else 0


def image_size(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the header alone; ImageTooLarge past `max_pixels`, NotAnImage for non-images."""
    with _open(data, max_pixels) as img:
        return img.size


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE):
    """BGR numpy array of an image file's bytes, at most `max_side` pixels on its longer side;
    ImageTooLarge past `max_pixels` (from the header, before decoding), NotAnImage for anything else.

    Decoded once: a JPEG straight at a reduced scale (PIL's draft mode, 1/2 to 1/8 from the DCT),
    other formats at their size (bounded by `max_pixels`) and then shrunk; one RGB-to-BGR copy."""
    import numpy as np
    from PIL import Image

    img = _open(data, max_pixels)
    try:
        with img:
            if max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)  # draft() first for a JPEG
            else:
                img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")
            return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])  # BGR, as OpenCV reads it
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data past the header
        raise NotAnImage(f"not a readable image ({exc.__class__.__name__}: {exc}); send a JPEG or PNG") from exc


def reading_order(boxes: list[Any], texts: list[str]) -> list[str]:
    """Texts sorted top to bottom by rows (boxes overlapping vertically), left to right within a row."""
    items = []
    for box, text in zip(boxes, texts):
        ys = [p[1] for p in box]
        xs = [p[0] for p in box]
        items.append((min(ys), max(ys), min(xs), text))
    items.sort(key=lambda t: (t[0] + t[1]) / 2)
    rows: list[list[tuple]] = []
    for item in items:
        if rows:
            last = rows[-1]
            top = sum(i[0] for i in last) / len(last)
            bottom = sum(i[1] for i in last) / len(last)
            centre = (item[0] + item[1]) / 2
            if top <= centre <= bottom:
                last.append(item)
                continue
        rows.append([item])
    return [i[3] for row in rows for i in sorted(row, key=lambda t: t[2]) if i[3].strip()]


class OcrEngine:
    """A lazily loaded, thread-safe RapidOCR."""

    def __init__(self):
        self._engine = None
        self._lock = threading.Lock()

    def _load(self):
        if self._engine is None:
            from rapidocr import RapidOCR

            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            self._engine = RapidOCR()
        return self._engine

    def lines(self, image: bytes | str | Path, max_pixels: int = MAX_PIXELS) -> list[str]:
        """OCR text lines of an image (file path or bytes) in reading order."""
        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"image not found: {path}")
            image = path.read_bytes()
        array = decode_image(image, max_pixels)
        with self._lock:
            result = self._load()(array)
        if result.txts is None or result.boxes is None:
            return []
        return reading_order([b.tolist() for b in result.boxes], list(result.txts))


_DEFAULT = OcrEngine()


def ocr_lines(image: bytes | str | Path, max_pixels: int = MAX_PIXELS) -> list[str]:
    return _DEFAULT.lines(image, max_pixels)
