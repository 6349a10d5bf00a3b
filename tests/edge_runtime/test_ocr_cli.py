"""OCR front end and the `predict` / `bench` commands on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_runtime.ocr import NotAnImage, decode_image, reading_order
from tests.edge_runtime.conftest import FIXTURES


def test_reading_order_groups_rows_left_to_right():
    boxes = [[[200, 10], [300, 10], [300, 30], [200, 30]], [[10, 12], [100, 12], [100, 32], [10, 32]],
             [[10, 50], [100, 50], [100, 70], [10, 70]]]
    assert reading_order(boxes, ["right", "left", "below"]) == ["left", "right", "below"]


def test_non_images_are_refused():
    for data in (b"", b"%PDF-1.4 not an image", b"\xff\xd8\xff broken jpeg"):
        with pytest.raises(NotAnImage):
            decode_image(data)


def test_predict_from_a_photo(receipts_bundle):
    out = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "predict", str(receipts_bundle), "--image",
                          str(FIXTURES / "receipt-000.jpg"), "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    body = json.loads(out.stdout)
    assert set(body["field_confidence"]) == {"company", "total"} and "confidence" in body


def test_predict_text_and_bench(sentiment_bundle, tmp_path):
    out = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "predict", str(sentiment_bundle), "--input",
                          "What a lovely day, I enjoyed every minute.", "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["answer"]["label"] in ("positive", "negative")
    from edge_runtime.bench import run_bench

    report = run_bench(sentiment_bundle, n_requests=3, gen_tokens=12, n_threads=2)
    assert report["generation"]["raw_llama_cpp_tok_s"] > 0 and report["generation"]["edge_runtime_tok_s"] > 0
    assert report["latency"]["with_reuse_p50_s"] > 0 and report["latency"]["prefix_tokens"] >= 5  # the short prompt's tag and header
