"""Logit distillation: the answer-position divergence equals the full-logits one, the teacher mixes in
as alpha * CE + (1 - alpha) * KD, a teacher with another tokenizer is refused, and train_student runs."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from distill.train.distillation import (
    DistillationSFTTrainer,
    TokenizerMismatch,
    answer_logits,
    check_same_tokenizer,
    distillation_loss,
)
from distill.train.loss import answer_only_loss

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A same-tokenizer teacher: wider, with other random weights."""
    from distill.models.tiny import build_tiny_gemma

    return build_tiny_gemma(tmp_path_factory.mktemp("teacher") / "tiny-teacher", hidden_size=96, seed=1)


def _load(path, softcap=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    model.config.final_logit_softcapping = softcap
    return model


def _batch(tok):
    """Two prompt + answer rows of different lengths, right-padded; labels only on the answers."""
    pairs = [("Receipt: SYARIKAT PERNIAGAAN GIN KEE, TOTAL 8.70\nAnswer:", ' {"total": "8.70"}'),
             ("Receipt: KEDAI 7-ELEVEN JALAN BESAR\nAnswer:", ' {"company": "7-ELEVEN", "total": "12.00"}')]
    rows = []
    for prompt, answer in pairs:
        p, a = tok(prompt)["input_ids"], tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append((p + a, [-100] * len(p) + a))
    n = max(len(ids) for ids, _ in rows)
    ids = torch.tensor([x + [tok.pad_token_id] * (n - len(x)) for x, _ in rows])
    labels = torch.tensor([y + [-100] * (n - len(y)) for _, y in rows])
    mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x, _ in rows])
    assert (mask == 0).any()
    return ids, labels, mask


def _explicit(student_full, teacher_full, labels, kind, beta, temperature):
    """The straightforward computation: full logits, shift, per-position divergence, mask, average."""
    s = F.log_softmax(student_full[:, :-1].float() / temperature, -1)
    t = F.log_softmax(teacher_full[:, :-1].float() / temperature, -1)
    keep = labels[:, 1:] != -100

    def kl(a, b):  # KL(exp(a) || exp(b)) over the vocabulary
        return (a.exp() * (a - b)).sum(-1)

    if kind == "forward_kl":
        per = kl(t, s)
    elif kind == "reverse_kl":
        per = kl(s, t)
    else:
        m = torch.log(beta * t.exp() + (1 - beta) * s.exp())
        per = beta * kl(t, m) + (1 - beta) * kl(s, m)
    return per[keep].mean()


@pytest.mark.parametrize("kind,softcap", [("forward_kl", None), ("reverse_kl", None), ("jsd", None), ("jsd", 5.0)])
def test_answer_position_loss_equals_full_logits(tiny_gemma_dir, teacher_dir, tiny_tokenizer, kind, softcap):
    from trl.experimental.gkd import GKDTrainer

    student, teacher = _load(tiny_gemma_dir, softcap), _load(teacher_dir, softcap)
    ids, labels, mask = _batch(tiny_tokenizer)
    beta, temperature = 0.3, 2.0
    s_rows, targets = answer_logits(student, ids, labels, mask)
    with torch.no_grad():
        t_rows, _ = answer_logits(teacher, ids, labels, mask)
        s_full = student(input_ids=ids, attention_mask=mask).logits  # the model's own head, with its soft-capping
        t_full = teacher(input_ids=ids, attention_mask=mask).logits
    assert s_rows.shape == (int((labels[:, 1:] != -100).sum()), s_full.shape[-1]) and targets.numel() == s_rows.shape[0]
    fast = distillation_loss(s_rows, t_rows, None, kind, beta, temperature)
    ref = _explicit(s_full, t_full, labels, kind, beta, temperature)
    assert fast.item() > 1e-3, "two different random models should disagree"
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    # the same through the mask argument on full logits, and through TRL's own full-tensor call
    shifted = labels[:, 1:]
    torch.testing.assert_close(distillation_loss(s_full[:, :-1], t_full[:, :-1], shifted != -100, kind, beta, temperature),
                               ref, rtol=1e-5, atol=1e-5)
    trl_beta = {"forward_kl": 0.0, "reverse_kl": 1.0, "jsd": beta}[kind]
    trl = GKDTrainer.generalized_jsd_loss(s_full[:, :-1], t_full[:, :-1], labels=shifted, beta=trl_beta,
                                          temperature=temperature)
    torch.testing.assert_close(fast, trl, rtol=1e-5, atol=1e-5)


def test_jsd_beta_ends_are_the_kl_directions(tiny_gemma_dir, teacher_dir, tiny_tokenizer):
    student, teacher = _load(tiny_gemma_dir), _load(teacher_dir)
    ids, labels, mask = _batch(tiny_tokenizer)
    with torch.no_grad():
        s, t = student(input_ids=ids, attention_mask=mask).logits, teacher(input_ids=ids, attention_mask=mask).logits
    temp = 0.05  # random tiny models are nearly uniform: sharpen them so the two directions differ clearly
    forward, reverse = _explicit(s, t, labels, "forward_kl", 0, temp), _explicit(s, t, labels, "reverse_kl", 0, temp)
    keep = labels[:, 1:] != -100
    s, t = s[:, :-1], t[:, :-1]
    assert abs(forward - reverse) > 1e-3, "the two directions should differ for these models"
    # TRL's GKD convention: beta 0 is KL(teacher || student), beta 1 is KL(student || teacher)
    torch.testing.assert_close(distillation_loss(s, t, keep, "jsd", 0.0, temp), forward, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(distillation_loss(s, t, keep, "jsd", 1.0, temp), reverse, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(distillation_loss(s, t, keep, "forward_kl", 0.7, temp), forward, rtol=1e-5, atol=1e-5)
    # inside (0, 1) it is a true JSD: bounded by log 2 per position, below either KL
    mid = distillation_loss(s, t, keep, "jsd", 0.5, temp)
    assert 0 < mid < min(forward, reverse) and mid <= math.log(2)


def test_zero_when_teacher_is_student(tiny_gemma_dir, tiny_tokenizer):
    student, teacher = _load(tiny_gemma_dir), _load(tiny_gemma_dir)
    ids, labels, mask = _batch(tiny_tokenizer)
    s, _ = answer_logits(student, ids, labels, mask)
    with torch.no_grad():
        t, _ = answer_logits(teacher, ids, labels, mask)
    for kind in ("forward_kl", "reverse_kl", "jsd"):
        assert abs(distillation_loss(s, t, None, kind, 0.5, 1.5).item()) < 1e-6, kind


def test_trainer_mixes_ce_and_kd_with_frozen_teacher(tiny_gemma_dir, teacher_dir, tiny_tokenizer, receipts_recipe, tmp_path):
    from datasets import Dataset

    from distill.recipe import DistillationConfig
    from distill.train.trainer import sft_config

    ids, labels, mask = _batch(tiny_tokenizer)
    ds = Dataset.from_list([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "length": 3}])
    training = receipts_recipe.student.training.model_copy(update={"max_steps": 1})
    cfg = DistillationConfig(teacher_model=str(teacher_dir), loss="reverse_kl", alpha=0.25, temperature=1.5)
    student, teacher = _load(tiny_gemma_dir), _load(teacher_dir)
    trainer = DistillationSFTTrainer(model=student, args=sft_config(training, tmp_path, 1, False, "cpu", "full"),
                                     train_dataset=ds, processing_class=tiny_tokenizer, teacher=teacher,
                                     distillation=cfg)
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, {"input_ids": ids, "labels": labels, "attention_mask": mask})
    loss.backward()
    s, _ = answer_logits(student, ids, labels, mask)
    with torch.no_grad():
        t, _ = answer_logits(teacher, ids, labels, mask)
        expected = 0.25 * answer_only_loss(student, ids, labels, mask) + 0.75 * distillation_loss(s, t, None, "reverse_kl", 0.5, 1.5)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-6)
    assert not trainer.teacher.training and all(p.grad is None and not p.requires_grad for p in trainer.teacher.parameters())
    assert any(p.grad is not None for p in student.parameters())
    assert trainer._metrics["train"]["kd_loss"] and trainer._metrics["train"]["ce_loss"]


# ---------------------------------------------------------------------------- refusals


def _wordlevel_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "total", "date", "{", "}"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def swapped_dir(tiny_gemma_dir, tmp_path_factory):
    """The Gemma tokenizer with two ordinary tokens' ids swapped (same size, same specials), and the config: no weights."""
    out = tmp_path_factory.mktemp("swapped")
    for name in ("tokenizer_config.json", "config.json"):
        shutil.copy(Path(tiny_gemma_dir) / name, out / name)
    data = json.loads((Path(tiny_gemma_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    by_id = {i: t for t, i in vocab.items()}
    special = {a["id"] for a in data.get("added_tokens", [])}
    a = next(i for i in range(20000, 30000) if i not in special and i + 1 not in special)
    b = a + 1
    vocab[by_id[a]], vocab[by_id[b]] = b, a
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out, a, by_id[a], by_id[b]


def _message_explains(message):
    assert "logit distillation refused" in message
    assert "same token ids" in message and "silently wrong" in message  # why
    assert "gemma-3-1b for gemma-3-270m" in message and "teacher.kind" in message and "plain SFT" in message  # fix


def test_same_tokenizer_is_accepted(tiny_tokenizer, tiny_gemma_dir, teacher_dir):
    from transformers import AutoConfig, AutoTokenizer

    check_same_tokenizer(tiny_tokenizer, AutoTokenizer.from_pretrained(teacher_dir),
                         AutoConfig.from_pretrained(tiny_gemma_dir), AutoConfig.from_pretrained(teacher_dir))


def test_refuses_a_different_vocabulary(tiny_tokenizer, tiny_gemma_dir):
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tiny_gemma_dir)
    with pytest.raises(TokenizerMismatch) as info:
        check_same_tokenizer(tiny_tokenizer, _wordlevel_tokenizer(), cfg, cfg)
    message = str(info.value)
    assert f"vocabulary sizes differ: the student has {len(tiny_tokenizer)} tokens, the teacher 8" in message
    # ids 0-3 and the special tokens agree (<pad>, <eos>, <bos>, <unk>): the first difference is id 4
    assert f"{len(tiny_tokenizer) - 4} token ids map to different strings, e.g. id 4 is " in message
    assert "for the teacher" in message and "bos_token" not in message
    _message_explains(message)


def test_refuses_same_size_vocabulary_with_other_ids(tiny_tokenizer, tiny_gemma_dir, swapped_dir):
    from transformers import AutoConfig, AutoTokenizer

    path, a, tok_a, tok_b = swapped_dir
    teacher_tok = AutoTokenizer.from_pretrained(path)
    assert len(teacher_tok) == len(tiny_tokenizer) and teacher_tok.eos_token == tiny_tokenizer.eos_token
    cfg = AutoConfig.from_pretrained(tiny_gemma_dir)
    with pytest.raises(TokenizerMismatch) as info:
        check_same_tokenizer(tiny_tokenizer, teacher_tok, cfg, cfg)
    message = str(info.value)
    assert f"2 token ids map to different strings, e.g. id {a} is {tok_a!r} for the student and {tok_b!r} for the teacher" in message
    assert "sizes differ" not in message and "width" not in message
    _message_explains(message)


def test_refuses_a_different_output_width(tiny_tokenizer, tiny_gemma_dir):
    from transformers import AutoConfig

    student_cfg, teacher_cfg = AutoConfig.from_pretrained(tiny_gemma_dir), AutoConfig.from_pretrained(tiny_gemma_dir)
    teacher_cfg.vocab_size += 64  # e.g. gemma-3-4b's 262208-wide head against gemma-3-270m's 262144
    with pytest.raises(TokenizerMismatch) as info:
        check_same_tokenizer(tiny_tokenizer, tiny_tokenizer, student_cfg, teacher_cfg)
    message = str(info.value)
    assert f"output layers differ in width: the student scores {student_cfg.vocab_size} token ids, the teacher " \
           f"{student_cfg.vocab_size + 64}" in message
    _message_explains(message)
    with pytest.raises(TokenizerMismatch, match="silently wrong"):
        distillation_loss(torch.zeros(3, 10), torch.zeros(3, 12))


def test_train_student_refuses_before_loading_weights(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir,
                                                       swapped_dir, tmp_path):
    from distill.recipe import DistillationConfig
    from distill.train import train_student

    path, *_ = swapped_dir  # config + tokenizer only: loading weights would fail differently
    student = small_student(receipts_recipe, tiny_gemma_dir)
    student.training.distillation = DistillationConfig(teacher_model=str(path))
    with pytest.raises(TokenizerMismatch, match=f"the teacher '{path}' does not share the student"):
        train_student(student, receipts_recipe.task, receipt_rows[:4], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------- end to end and recipe


SCRIPT = """
import json, sys
from distill.recipe import StudentConfig
from distill.train import train_student
from edge_runtime.task import TaskSpec
spec = json.load(open(sys.argv[1]))
m = train_student(StudentConfig.model_validate(spec["student"]), TaskSpec.model_validate(spec["task"]), spec["rows"], spec["out"])
print("METRICS" + json.dumps(m))
"""


def test_train_student_with_distillation(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, teacher_dir,
                                         tmp_path):
    """A fresh process (as test_memory.py): memory freed by earlier tests cannot hide the measured peak."""
    import os
    import subprocess
    import sys

    from distill.recipe import DistillationConfig

    student = small_student(receipts_recipe, tiny_gemma_dir, max_steps=2, eval_steps=1, max_seq_len=1024)
    # forward KL: the cheapest divergence on a 262k vocabulary (jsd's maths is checked above)
    student.training.distillation = DistillationConfig(teacher_model=str(teacher_dir), alpha=0.5, temperature=2.0)
    out = tmp_path / "run"
    spec = {"student": student.model_dump(mode="json"), "task": receipts_recipe.task.model_dump(mode="json"),
            "rows": receipt_rows[:6], "out": str(out)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "spec.json")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.split("METRICS", 1)[1])
    assert (out / "adapter" / "adapter_model.safetensors").exists() and (out / "merged" / "model.safetensors").exists()
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["distillation"] == {"teacher_model": str(teacher_dir), "loss": "forward_kl", "beta": 0.5, "alpha": 0.5,
                                     "temperature": 2.0, "teacher_path": str(teacher_dir)}
    assert metrics["steps"] == 2 and math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["eval_loss"])
    assert metrics["kd_losses"] and all(math.isfinite(x) and x > 0 for x in metrics["kd_losses"])
    assert metrics["ce_losses"] and all(math.isfinite(x) for x in metrics["ce_losses"])
    # the estimate counts the teacher (weights, its logits and the divergence's buffers) and stays within 25%
    parts = metrics["memory_estimate_parts"]
    assert parts["teacher_weights"] > 0 and parts["distillation_logits"] > 0
    if Path("/proc/self/clear_refs").exists():
        est, peak = metrics["memory_estimate_bytes"], metrics["peak_memory_bytes"]
        assert abs(est - peak) / peak <= 0.25, f"estimate {est / 2**20:.0f} MiB vs measured {peak / 2**20:.0f} MiB: {parts}"


def test_recipe_with_distillation_validates_and_bad_loss_is_named():
    from distill.recipe import RecipeError, load_recipe

    quick = ROOT / "recipes" / "receipts-small.yaml"
    recipe = load_recipe(quick, ["student.training.distillation={teacher_model: gemma-3-1b, loss: jsd, beta: 0.2}"])
    d = recipe.student.training.distillation
    assert (d.teacher_model, d.loss, d.beta, d.alpha, d.temperature) == ("gemma-3-1b", "jsd", 0.2, 0.5, 1.0)
    assert load_recipe(quick).student.training.distillation is None
    with pytest.raises(RecipeError) as info:
        load_recipe(quick, ["student.training.distillation={teacher_model: gemma-3-1b, loss: kl, alpha: 2}"])
    problems = info.value.problems
    assert any(p.startswith("student.training.distillation.loss:") and "forward_kl" in p for p in problems), problems
    assert any(p.startswith("student.training.distillation.alpha:") for p in problems), problems
    with pytest.raises(RecipeError) as info:
        load_recipe(quick, ["student.training.distillation={loss: jsd}"])
    assert any(p.startswith("student.training.distillation.teacher_model:") for p in info.value.problems)
