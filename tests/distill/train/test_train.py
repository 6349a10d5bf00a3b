"""train_student end to end on a tiny Gemma: outputs, template, merge, best checkpoint, resume, refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from distill.train import QLoRANeedsCUDA, train_student
from distill.train.data import PromptFormat, prompt_format

ROOT = Path(__file__).resolve().parents[3]

KEYS = ("adapter_dir", "merged_dir", "steps", "train_loss", "eval_loss", "trained_tokens", "tokens_per_s",
        "duration_s", "memory_estimate_bytes", "peak_memory_bytes")


@pytest.fixture(scope="module")
def trained(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    student = small_student(receipts_recipe, tiny_gemma_dir)
    metrics = train_student(student, receipts_recipe.task, receipt_rows[:16], out)
    return out, metrics, student


def test_outputs_and_metrics(trained):
    out, metrics, _ = trained
    assert all(metrics[k] is not None for k in KEYS)
    assert metrics["steps"] == 4 and metrics["trained_tokens"] > metrics["answer_tokens"] > 0
    assert json.loads((out / "train_metrics.json").read_text())["steps"] == 4
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "adapter" / "adapter_model.safetensors").exists()
    assert (out / "merged" / "config.json").exists() and (out / "merged" / "model.safetensors").exists()
    assert (out / "merged" / "tokenizer.json").exists()
    # the best checkpoint (lowest validation loss) is the one kept and reported
    assert metrics["eval_loss"] == pytest.approx(min(metrics["eval_losses"]))
    assert Path(metrics["best_checkpoint"]).is_dir()


def test_template_saved_with_adapter_and_merged_and_reloads(trained, receipts_recipe, tiny_tokenizer):
    out, _, _ = trained
    expected = prompt_format(tiny_tokenizer, receipts_recipe.task)
    for where in ("adapter", "merged"):
        assert PromptFormat.load(out / where) == expected


def test_merged_model_gives_base_plus_adapter_logits(trained, tiny_gemma_dir, tiny_tokenizer, receipts_recipe, receipt_rows):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _, _ = trained
    ids = tiny_tokenizer(receipts_recipe.task.render_prompt(receipt_rows[20]), return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32)
    plain = base(ids).logits
    with_adapter = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        a, m = with_adapter(ids).logits, merged(ids).logits
    assert not torch.allclose(plain, a, atol=1e-4), "training did not change the model"
    torch.testing.assert_close(m, a, rtol=1e-4, atol=1e-4)
    # the output layer is still the (tied) embedding
    assert merged.config.tie_word_embeddings
    assert merged.get_output_embeddings().weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()


def test_resume_after_kill_matches_uninterrupted_run(trained, receipts_recipe, receipt_rows, tmp_path):
    from safetensors.torch import load_file

    out_full, metrics_full, student = trained
    out = tmp_path / "run"
    spec = {"student": student.model_dump(mode="json"), "task": receipts_recipe.task.model_dump(mode="json"),
            "rows": receipt_rows[:16], "out_dir": str(out)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("killed_run.py")), str(tmp_path / "spec.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (out / "checkpoints" / "checkpoint-2").is_dir() and not (out / "merged").exists()

    metrics = train_student(student, receipts_recipe.task, receipt_rows[:16], out)
    assert metrics["resumed_from"].endswith("checkpoint-2")
    assert metrics["steps"] == 4
    a = load_file(out / "adapter" / "adapter_model.safetensors")
    b = load_file(out_full / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal is for machines without CUDA")
def test_qlora_refused_without_cuda(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path):
    student = small_student(receipts_recipe, tiny_gemma_dir)
    student.method = "qlora"
    with pytest.raises(QLoRANeedsCUDA, match="student.method: lora"):
        train_student(student, receipts_recipe.task, receipt_rows[:8], tmp_path)
    assert not (tmp_path / "checkpoints").exists()
