"""Train and eval rows when the data has a separate eval file: sizes are fixed-seed random samples
in file order, never file prefixes (SMP2017's files are sorted by label: a prefix of 200 develop
rows holds 6 of the 31 domains)."""

from collections import Counter
from pathlib import Path

from distill.data.io import sample_rows
from distill.pipeline.stages import load_splits
from distill.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]


def test_sizes_sample_both_files_across_their_labels():
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", ["data.split.eval_size=200", "data.split.train_size=400"])
    train, evals = load_splits(recipe)
    assert len(train) == 400 and len(evals) == 200
    assert len(Counter(r["gold"]["label"] for r in evals)) >= 25  # a prefix holds 6
    assert len(Counter(r["gold"]["label"] for r in train)) >= 28
    ids = [int(r["id"].split("-")[-1]) for r in evals]
    assert ids == sorted(ids)  # file order kept
    again_train, again_evals = load_splits(recipe)
    assert [r["id"] for r in again_evals] == [r["id"] for r in evals]  # the same seed draws the same rows
    assert [r["id"] for r in again_train] == [r["id"] for r in train]


def test_sample_rows_keeps_all_when_not_smaller():
    rows = [{"id": str(i)} for i in range(5)]
    assert sample_rows(rows, None, 0) == rows and sample_rows(rows, 5, 0) == rows and sample_rows(rows, 9, 0) == rows
    assert len(sample_rows(rows, 3, 0)) == 3
