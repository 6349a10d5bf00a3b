"""Shared fixtures for the training tests: the small receipts recipe's task (recipes/receipts-small.yaml), real receipt rows, a tokenizer."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def receipts_recipe():
    from distill.recipe import load_recipe

    return load_recipe(ROOT / "recipes" / "receipts-small.yaml")


@pytest.fixture(scope="session")
def receipt_rows(receipts_recipe):
    from distill.data.io import read_rows

    rows = read_rows(receipts_recipe.data.path, "id")[:40]
    for row in rows:
        row["answer"] = row["fields"]
    return rows


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_gemma_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_gemma_dir)


@pytest.fixture(scope="session")
def small_student():
    return _small_student


def _small_student(receipts_recipe, model_dir, **training):
    """The small receipts recipe's student section pointed at a tiny model, with quick training numbers."""
    student = receipts_recipe.student.model_copy(deep=True)
    student.model = str(model_dir)
    for key, value in {"batch_size": 2, "max_steps": 4, "eval_steps": 2, **training}.items():
        setattr(student.training, key, value)
    return student
