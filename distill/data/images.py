"""Task rows from a folder of scans: each image read into text lines by the runtime's OCR
front end (RapidOCR), so the student trains on exactly the text the device will see.

Gold answers, where there are some, sit beside the images in `labels.jsonl` (one object per
line with `id` = the image's file name without its suffix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.data.io import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
LABELS_FILE = "labels.jsonl"


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def read_image_folder(folder: str | Path, input_field: str) -> list[dict[str, Any]]:
    from edge_runtime.ocr import NotAnImage, ocr_lines

    from distill.progress import Bar

    folder = Path(folder)
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder")
    labels: dict[str, dict[str, Any]] = {}
    if (folder / LABELS_FILE).is_file():
        for n, line in enumerate((folder / LABELS_FILE).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    entry = json.loads(line)
                    labels[str(entry["id"])] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError(f"{folder / LABELS_FILE}:{n}: expected a JSON object with an `id`") from None
    rows = []
    with Bar(f"OCR {folder.name}", len(files), "img") as bar:
        for path in files:
            try:
                lines = ocr_lines(path)
            except NotAnImage as exc:
                raise DataError(f"{path}: {exc}") from None
            rows.append({**labels.get(path.stem, {}), "id": path.stem, "image": path.name, input_field: lines})
            bar.advance(info=path.name)
    return rows
