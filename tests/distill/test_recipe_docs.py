"""Recipe documentation: every field of every recipe model has a description, the committed
reference page is what the models generate, and `distill validate --explain` shows them."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field

import distill.recipe as recipe_module
from distill import recipe_docs
from distill.recipe import LoraConfig, Recipe
from edge_runtime.task import Strict

ROOT = Path(__file__).resolve().parents[2]


def test_every_recipe_field_has_a_description():
    missing = recipe_docs.undocumented()
    assert not missing, (
        "recipe fields without a description (give each Field(..., description=\"what it does, unit, why this "
        "default\")), then run `python -m distill.recipe_docs`:\n  " + "\n  ".join(missing))


def test_the_walk_reaches_every_model_and_kind():
    """The walk that the check above relies on: every teacher kind, nested, optional, list and
    mapping sections, and every model class distill/recipe.py defines."""
    paths = {d.path for d in recipe_docs.all_fields()}
    for path in ("student.lora.r", "teacher.base_url", "teacher.n_ctx", "teacher.synthesize.count",
                 "student.training.distillation.loss", "task.fields.<name>.type", "task.few_shot[].input",
                 "data.split.eval_size", "target.confidence_threshold"):
        assert path in paths, path
    reached = {s.model for s in recipe_docs.sections()}
    defined = {c for _, c in inspect.getmembers(recipe_module, inspect.isclass)
               if issubclass(c, BaseModel) and c.__module__ == recipe_module.__name__ and c.model_fields}
    assert defined and defined <= reached, f"models the walk misses: {sorted(c.__name__ for c in defined - reached)}"


def test_the_check_names_an_undocumented_nested_field():
    class Inner(Strict):
        documented: int = Field(1, description="has one")
        bare: int = 2

    class Outer(Strict):
        inner: list[Inner] | None = Field(None, description="a list of sections")

    assert recipe_docs.undocumented(Outer) == ["inner[].bare (Inner.bare)"]


def test_committed_reference_is_current(capsys):
    assert recipe_docs.REFERENCE.is_file(), "run `python -m distill.recipe_docs` and commit docs/recipe-reference.md"
    assert recipe_docs.REFERENCE.read_text(encoding="utf-8") == recipe_docs.render_reference(), \
        "docs/recipe-reference.md is stale: run `python -m distill.recipe_docs` and commit it"
    assert recipe_docs.main(["--check"]) == 0


def test_check_fails_on_a_stale_or_missing_page(tmp_path, capsys):
    page = tmp_path / "ref.md"
    assert recipe_docs.main(["--check", "--out", str(page)]) == 1
    assert "is missing" in capsys.readouterr().err
    assert recipe_docs.main(["--out", str(page)]) == 0
    assert recipe_docs.main(["--check", "--out", str(page)]) == 0
    page.write_text(page.read_text().replace("LoRA rank", "LoRA width"))
    assert recipe_docs.main(["--check", "--out", str(page)]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err and "python -m distill.recipe_docs" in err


def test_reference_lists_each_field_with_type_default_and_description():
    text = recipe_docs.render_reference()
    r = LoraConfig.model_fields["r"]
    assert f"| `student.lora.r` | `int` | `16` | {r.description} |" in text
    assert "| `teacher` | " in text and "(kind: dataset)" in text
    assert "## `teacher` (kind: openai)" in text


def test_validate_explain_shows_values_defaults_and_descriptions():
    out = subprocess.run(
        [sys.executable, "-m", "distill.cli", "validate", str(ROOT / "recipes" / "receipts-small.yaml"), "--explain"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "COLUMNS": "220"})
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()}
    value, default, description = rows["student.lora.r"]
    assert (value, default) == ("16", "16")
    assert LoraConfig.model_fields["r"].description.startswith(description.rstrip())
    assert rows["student.lora.dropout"][:2] == ["0.0", "0.05"]  # the recipe's value beside the default
    assert rows["quantize.types"][:2] == ['["q8_0"]', '["q4_k_m"]']
    assert rows["teacher.kind"][0] == '"dataset"'
    assert len(rows) >= len(Recipe.model_fields) + 60
