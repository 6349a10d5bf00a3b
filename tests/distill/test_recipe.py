"""Recipes: every shipped recipe validates; broken ones fail with messages naming the field."""

from pathlib import Path

import pytest

from distill.cli import main
from distill.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Run: ") and path.name in first, "a recipe's first line is the command that runs it"


def _write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


BASE = (ROOT / "recipes" / "receipts-small.yaml").read_text().replace("../data/", str(ROOT / "data") + "/")


def _problems(path, overrides=None):
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value.problems, str(info.value)


def test_unknown_key_is_named(tmp_path):
    problems, _ = _problems(_write(tmp_path, BASE.replace("  method: lora", "  method: lora\n  lora_rank: 8")))
    assert problems == ["student.lora_rank: unknown key (check the spelling; `distill validate` prints every allowed key with its default)"]


def test_all_problems_reported_at_once(tmp_path):
    text = BASE.replace("r: 16", "r: 0").replace("kind: dataset", "kind: openia").replace("epochs: 1", "epochs: lots")
    problems, message = _problems(_write(tmp_path, text))
    assert "student.lora.r: must be greater than 0" in problems
    assert any(p.startswith("teacher.kind: unknown 'openia', expected one of dataset, openai") for p in problems)
    assert any(p.startswith("student.training.epochs:") for p in problems)
    assert "3 problem(s)" in message


def test_missing_data_file(tmp_path):
    problems, _ = _problems(_write(tmp_path, BASE.replace("receipts.jsonl", "nope.jsonl")))
    assert len(problems) == 1 and problems[0].startswith("data.path: file not found:") and "nope.jsonl" in problems[0]


def test_empty_yaml(tmp_path):
    problems, _ = _problems(_write(tmp_path, "# only a comment\n"))
    assert problems == ["the file is empty: a recipe needs at least `task` and `data` sections"]


def test_not_yaml(tmp_path):
    problems, _ = _problems(_write(tmp_path, "task: [unclosed\n  kind: x: y\n"))
    assert problems[0].startswith("not valid YAML at line")


def test_not_a_mapping(tmp_path):
    problems, _ = _problems(_write(tmp_path, "- a\n- b\n"))
    assert problems == ["a recipe is a YAML mapping of sections, got a list"]


def test_missing_sections(tmp_path):
    problems, _ = _problems(_write(tmp_path, "student: {model: gemma-3-270m}\n"))
    assert sorted(problems) == ["data: Field required", "task: Field required"]


def test_task_kind_needs_its_fields(tmp_path):
    text = BASE.replace("kind: extraction", "kind: classification")
    problems, _ = _problems(_write(tmp_path, text))
    assert any("classification task needs `labels`" in p for p in problems)


def test_overrides_apply_and_validate(tmp_path):
    path = _write(tmp_path, BASE)
    recipe = load_recipe(path, ["student.training.max_steps=3", "eval.predictors=[teacher]"])
    assert recipe.student.training.max_steps == 3 and recipe.eval.predictors == ["teacher"]
    problems, _ = _problems(path, ["student.training.max_steps=-1"])
    assert problems == ["student.training.max_steps: must be greater than 0"]


def test_validate_command_prints_resolved_recipe_or_errors(tmp_path, capsys):
    assert main(["validate", str(ROOT / "recipes" / "quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "near_duplicate_threshold: 0.9" in out and "name: quickstart" in out  # defaults filled in
    bad = _write(tmp_path, BASE.replace("r: 16", "r: -2"))
    assert main(["validate", str(bad)]) == 2
    assert "student.lora.r: must be greater than 0" in capsys.readouterr().err


def test_classifier_head_refuses_plus_lora_types():
    path = ROOT / "recipes" / "banking-intents.yaml"
    problems, _ = _problems(path, ["student.head=classifier", "quantize.types=[q8_0, q4_k_m+lora]"])
    assert any("quantize.types ['q4_k_m+lora']" in p and "plain types" in p for p in problems), problems
    assert load_recipe(path, ["student.head=classifier", "quantize.types=[q8_0, q4_k_m]"]).quantize.types == ["q8_0", "q4_k_m"]
