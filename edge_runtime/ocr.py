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

MAX_PIXELS = 40_000_000


class NotAnImage(ValueError):
    """Uploaded bytes that are not a readable image."""


def decode_image(data: bytes):
    """RGB numpy array of an image file's bytes; NotAnImage for anything else."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise NotAnImage("empty upload; send a JPEG or PNG image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise NotAnImage(f"image is {img.width}x{img.height}; the limit is {MAX_PIXELS:,} pixels")
            return np.asarray(img.convert("RGB"))[:, :, ::-1].copy()  # BGR, as OpenCV reads it
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise NotAnImage(f"not a readable image ({exc.__class__.__name__}); send a JPEG or PNG") from exc


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

    def lines(self, image: bytes | str | Path) -> list[str]:
        """OCR text lines of an image (file path or bytes) in reading order."""
        if isinstance(image, (str, Path)):
            path = Path(image)
            if not path.is_file():
                raise FileNotFoundError(f"image not found: {path}")
            image = path.read_bytes()
        array = decode_image(image)
        with self._lock:
            result = self._load()(array)
        if result.txts is None or result.boxes is None:
            return []
        return reading_order([b.tolist() for b in result.boxes], list(result.txts))


_DEFAULT = OcrEngine()


def ocr_lines(image: bytes | str | Path) -> list[str]:
    return _DEFAULT.lines(image)
