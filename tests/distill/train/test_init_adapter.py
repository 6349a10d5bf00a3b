"""student.init_adapter: a run continues from a previous run's LoRA adapter (the tiny Gemma,
real training). With a learning rate too small to move the weights, the continued adapter
equals the previous one, where a fresh LoRA would start with lora_B = 0."""

import json
import shutil

import pytest

from distill.recipe import RecipeError, load_recipe
from distill.train import train_student
from tests.distill.train.conftest import ROOT


def _lora_b(adapter_dir):
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    return {k: v for k, v in weights.items() if "lora_B" in k}


def test_training_continues_from_a_previous_adapter(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path):
    import torch

    first = small_student(receipts_recipe, tiny_gemma_dir, max_steps=2, eval_steps=2)
    train_student(first, receipts_recipe.task, receipt_rows[:8], tmp_path / "first")
    previous = _lora_b(tmp_path / "first" / "adapter")
    assert any(v.abs().max() > 0 for v in previous.values())  # trained: no longer the fresh zeros

    again = small_student(receipts_recipe, tiny_gemma_dir, max_steps=1, eval_steps=1, learning_rate=1e-12)
    again.init_adapter = tmp_path / "first" / "adapter"
    metrics = train_student(again, receipts_recipe.task, receipt_rows[8:16], tmp_path / "second")
    continued = _lora_b(tmp_path / "second" / "adapter")
    assert continued.keys() == previous.keys() and metrics["steps"] == 1
    assert all(torch.allclose(continued[k], previous[k], atol=1e-6) for k in previous)

    # an adapter of another base is refused, naming the field
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "first" / "adapter", other)
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(tmp_path / "elsewhere")}))
    again.init_adapter = other
    with pytest.raises(ValueError, match="student.init_adapter: .* was trained on"):
        train_student(again, receipts_recipe.task, receipt_rows[8:16], tmp_path / "third")


def test_init_adapter_is_checked_when_the_recipe_loads(tmp_path):
    with pytest.raises(RecipeError, match="student.init_adapter: no LoRA adapter at"):
        load_recipe(ROOT / "recipes" / "receipts-small.yaml", [f"student.init_adapter={tmp_path}"])
    with pytest.raises(RecipeError, match="needs student.method lora or qlora"):
        load_recipe(ROOT / "recipes" / "receipts-small.yaml", [f"student.init_adapter={tmp_path}", "student.method=full"])


def test_a_classifier_continues_its_adapter_and_head(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path):
    """student.head: classifier with init_adapter: the LoRA and the trained head (`score`) carry
    on; a generate adapter or one trained for other labels is refused, naming the field."""
    import numpy as np

    from distill.train.classifier import train_classifier
    from edge_runtime.heads import ClassifierHead
    from edge_runtime.task import TaskSpec

    task = TaskSpec.model_validate({"name": "mood", "kind": "classification", "input_field": "text",
                                    "labels": ["happy", "sad"], "instructions": "Is the writer happy or sad?"})
    words = ["great day", "awful news", "loved it", "so tired", "what fun", "lost again", "sunny walk", "rain all week"]
    rows = [{"id": f"r{i}", "text": w, "answer": {"label": "happy" if i % 2 == 0 else "sad"}} for i, w in enumerate(words * 2)]
    first = small_student(receipts_recipe, tiny_gemma_dir, max_steps=2, eval_steps=2, val_fraction=0.0)
    train_classifier(first, task, rows, tmp_path / "first")
    head = ClassifierHead.load(tmp_path / "first" / "head.npz").weight

    again = small_student(receipts_recipe, tiny_gemma_dir, max_steps=1, eval_steps=1, val_fraction=0.0, learning_rate=1e-12)
    again.init_adapter = tmp_path / "first" / "adapter"
    train_classifier(again, task, rows[:4], tmp_path / "second")
    assert np.allclose(ClassifierHead.load(tmp_path / "second" / "head.npz").weight, head, atol=1e-6)  # not a fresh head

    renamed = task.model_copy(update={"labels": ["sad", "happy"]})
    with pytest.raises(ValueError, match="student.init_adapter: .* trained for other labels"):
        train_classifier(again, renamed, rows[:4], tmp_path / "third")
    generate = small_student(receipts_recipe, tiny_gemma_dir, max_steps=1, eval_steps=1)
    train_student(generate, receipts_recipe.task, receipt_rows[:4], tmp_path / "gen")
    again.init_adapter = tmp_path / "gen" / "adapter"
    with pytest.raises(ValueError, match="student.init_adapter: .* is a generate student's adapter"):
        train_classifier(again, task, rows[:4], tmp_path / "fourth")


def test_an_adapter_of_another_base_is_a_clear_cli_error(tmp_path, tiny_gemma_dir):
    """Through the real CLI: exit 2, the message names the field, both models and the fix; no traceback."""
    import subprocess
    import sys

    adapter = tmp_path / "old-run" / "train" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": str(tmp_path / "another-base")}))
    args = [sys.executable, "-m", "distill.cli", "run", str(ROOT / "recipes" / "receipts-small.yaml"), "--until", "train",
            "--run-dir", str(tmp_path / "run"), "--set", f"student.model={tiny_gemma_dir}",
            "--set", f"student.init_adapter={adapter}", "--set", "data.split.train_size=8", "--set", "data.split.eval_size=2"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "student.init_adapter" in done.stderr and "another-base" in done.stderr and "drop init_adapter" in done.stderr
    assert (tmp_path / "run" / "curate" / "record.json").is_file()  # the stages before it are kept
