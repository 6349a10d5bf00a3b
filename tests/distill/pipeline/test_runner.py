"""The run pipeline: stage records, skipping, invalidation by recipe changes, --from/--until.

Uses the real teach and curate stages on the real receipts (they need no model)."""

import json
from pathlib import Path

import pytest

from distill.cli import main
from distill.pipeline.runner import read_record, run_pipeline, select_stages
from distill.recipe import load_recipe

RECEIPTS = Path(__file__).resolve().parents[3] / "recipes" / "receipts-small.yaml"


def _run(tmp_path, overrides=(), **kw):
    recipe = load_recipe(RECEIPTS, list(overrides))
    logs = []
    run_pipeline(recipe, tmp_path / "run", log=logs.append, **kw)
    return logs


def test_finished_stages_are_skipped_and_changes_redo_what_they_affect(tmp_path):
    logs = _run(tmp_path, until="curate")
    assert any(l.startswith("[teach] running") for l in logs) and any(l.startswith("[curate] running") for l in logs)
    labelled = (tmp_path / "run/teach/labelled.jsonl").read_text().splitlines()
    assert len(labelled) == 80 and all(json.loads(l)["answer"] for l in labelled)
    assert len((tmp_path / "run/teach/eval.jsonl").read_text().splitlines()) == 24
    teach_fp = read_record(tmp_path / "run", "teach")["fingerprint"]

    logs = _run(tmp_path, until="curate")
    assert [l.split(" ")[1] for l in logs] == ["up", "up"]  # both "up to date"

    # a curate change redoes curate only
    logs = _run(tmp_path, ["curate.dedup=false"], until="curate")
    assert logs[0].startswith("[teach] up to date") and logs[1].startswith("[curate] running")
    # a data change redoes teach and everything after it; the old outputs are kept aside, not deleted
    logs = _run(tmp_path, ["data.split.train_size=60"], until="curate")
    assert logs[0].startswith("[teach] running") and logs[1] == f"[teach] outputs of the previous settings moved to {tmp_path / 'run/teach.prev'}"
    assert any(l.startswith("[curate] running") for l in logs)
    assert len((tmp_path / "run/teach.prev/labelled.jsonl").read_text().splitlines()) == 80
    assert read_record(tmp_path / "run", "teach")["fingerprint"] != teach_fp
    report = json.loads((tmp_path / "run/curate/report.json").read_text())
    assert report["input_rows"] == 60


def test_a_stage_killed_before_its_record_is_redone(tmp_path):
    _run(tmp_path, until="curate")
    (tmp_path / "run/curate/record.json").unlink()  # what a kill before the end leaves
    logs = _run(tmp_path, until="curate")
    assert logs[0].startswith("[teach] up to date") and logs[1].startswith("[curate] running")


def test_from_needs_fresh_earlier_stages(tmp_path):
    with pytest.raises(RuntimeError, match="needs 'teach'"):
        _run(tmp_path, start="curate", until="curate")
    _run(tmp_path, until="curate")
    with pytest.raises(RuntimeError, match="'curate' is out of date"):
        _run(tmp_path, ["curate.ngram=5"], start="train", until="train")


def test_stage_selection_errors():
    assert select_stages("train", "eval") == ["train", "eval"]
    with pytest.raises(ValueError, match="unknown stage 'trian'"):
        select_stages("trian", None)
    with pytest.raises(ValueError, match="comes after"):
        select_stages("eval", "teach")


def test_cli_runs_single_stages(tmp_path):
    run_dir = tmp_path / "cli-run"
    assert main(["teach", str(RECEIPTS), "--run-dir", str(run_dir)]) == 0
    assert main(["curate", str(RECEIPTS), "--run-dir", str(run_dir)]) == 0
    report = json.loads((run_dir / "curate/report.json").read_text())
    assert report["input_rows"] == 80 and report["kept"] + sum(d["count"] for d in report["dropped"].values()) == 80


def test_unset_optional_settings_are_not_fingerprinted():
    """A new optional setting (default None) must not invalidate stages finished before it existed."""
    from distill.pipeline.runner import _section

    recipe = load_recipe(RECEIPTS)
    assert recipe.student.training.distillation is None
    student = _section(recipe, "student")
    assert "distillation" not in student["training"] and "max_steps" not in student["training"]
    with_max = load_recipe(RECEIPTS, ["student.training.max_steps=3"])
    assert _section(with_max, "student")["training"]["max_steps"] == 3


def test_cli_names_a_stage_order_problem_without_a_traceback(tmp_path):
    """`distill run --from` a stage whose inputs are missing, or an unknown stage: one error line."""
    import subprocess
    import sys

    from tests.conftest import RECEIPTS

    for stage, says in (("curate", "needs 'teach'"), ("trian", "invalid choice")):
        done = subprocess.run([sys.executable, "-m", "distill.cli", "run", str(RECEIPTS), "--from", stage,
                               "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
