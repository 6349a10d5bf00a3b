"""A folder of receipt scans as task input: OCR'd by the runtime's front end, labelled by
the teacher stage, gold answers taken from labels.jsonl beside the images."""

import json
import shutil
from pathlib import Path

import pytest

from distill.cli import main
from distill.data.images import read_image_folder
from distill.data.io import DataError

SCAN = Path(__file__).resolve().parents[2] / "edge_runtime" / "fixtures" / "receipt-000.jpg"  # SROIE 000 (MIT)
GOLD = {"company": "BOOK TA .K (TAMAN DAYA) SDN BHD", "date": "25/12/2018",
        "address": "NO.53 55,57 & 59, JALAN SAGU 18, TAMAN DAYA, 81100 JOHOR BAHRU, JOHOR.", "total": "9.00"}


def test_teach_reads_a_folder_of_scans(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    for name in ("r1", "r2"):
        shutil.copy(SCAN, scans / f"{name}.jpg")
    (scans / "notes.txt").write_text("not a scan: ignored")
    (scans / "labels.jsonl").write_text("\n".join(json.dumps({"id": n, "fields": GOLD}) for n in ("r1", "r2")))
    receipts_small = (Path(__file__).resolve().parents[3] / "recipes" / "receipts-small.yaml").read_text()
    recipe = tmp_path / "scans.yaml"
    recipe.write_text(receipts_small.replace("../data/sroie/receipts.jsonl", str(scans))
                      .replace("split: {eval_size: 24, train_size: 80, seed: 0}", "split: {eval_size: 1, seed: 0}"))
    assert main(["teach", str(recipe), "--run-dir", str(tmp_path / "run")]) == 0
    labelled = [json.loads(l) for l in (tmp_path / "run/teach/labelled.jsonl").read_text().splitlines()]
    assert len(labelled) == 1 and labelled[0]["answer"] == GOLD and labelled[0]["image"].endswith(".jpg")
    text = "\n".join(labelled[0]["ocr_lines"])
    assert "TAMAN DAYA" in text and "9.00" in text  # the receipt's own words, read from the scan


def test_a_file_that_is_not_an_image_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        read_image_folder(tmp_path, "ocr_lines")
    with pytest.raises(DataError, match="no images"):
        read_image_folder(_empty_folder(tmp_path), "ocr_lines")


def _empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_eval_reads_a_folder_of_scans_through_ocr(tmp_path):
    """`distill eval --data FOLDER`: the scans are OCR'd and judged against labels.jsonl."""
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(SCAN, scans / "r1.jpg")
    (scans / "labels.jsonl").write_text(json.dumps({"id": "r1", "fields": GOLD}) + "\n")
    out = tmp_path / "out"
    assert main(["eval", str(Path(__file__).resolve().parents[3] / "recipes" / "receipts-small.yaml"),
                 "--run-dir", str(tmp_path / "run"), "--data", str(scans), "--predictor", "teacher",
                 "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 1 and metrics["predictors"]["teacher"]["headline"] == 1.0
    row = json.loads((out / "teacher/predictions.jsonl").read_text().splitlines()[0])
    assert row["id"] == "r1" and row["gold"] == GOLD
