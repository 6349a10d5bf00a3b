"""task.language in stage fingerprints: English (what every run rendered before the setting
existed) leaves finished runs valid; switching the prompt language redoes the stages it changes.

Uses the real teach stage on the small receipts recipe's receipts (it needs no model)."""

from pathlib import Path

from distill.pipeline.runner import read_record, run_pipeline
from distill.recipe import load_recipe

RECEIPTS = Path(__file__).resolve().parents[3] / "recipes" / "receipts-small.yaml"


def _run(tmp_path, overrides=()):
    logs = []
    run_pipeline(load_recipe(RECEIPTS, list(overrides)), tmp_path / "run", log=logs.append, until="teach")
    return logs


def test_english_is_not_in_the_fingerprint_and_a_change_of_language_redoes_teach(tmp_path):
    assert _run(tmp_path)[0].startswith("[teach] running")
    record = read_record(tmp_path / "run", "teach")
    assert "language" not in record["sections"]["task"]  # as records written before the setting existed
    assert _run(tmp_path, ["task.language=en"])[0].startswith("[teach] up to date")
    assert _run(tmp_path, ["task.language=zh"])[0].startswith("[teach] running")
    assert read_record(tmp_path / "run", "teach")["sections"]["task"]["language"] == "zh"
