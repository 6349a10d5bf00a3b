"""`train_classifier`: LoRA plus a classification head on the student's final hidden state.

For `student.head: classifier` (classification tasks). The student reads the input alone
(`edge_runtime.heads.head_input`: no instructions, no label list) and a linear head on the
last token's final hidden state scores the label set: one forward pass, no output layer over
the vocabulary, and a probability distribution the escalation threshold can trust.

The loss is cross-entropy against the teacher's label, or against the teacher's label
distribution where a row carries one (`label_distribution`: {label: probability}, from votes
or log-probabilities): distillation of the distribution, not only of the argmax. A
temperature is fitted on the validation split only (`distill.train.calibration`).

Outputs, like `train_student`'s: `adapter/` (PEFT), `merged/` (the body merged into an
ordinary causal-LM checkpoint, which the quantize stage converts to GGUF unchanged),
`head.npz` (the head, `edge_runtime.heads`) and `train_metrics.json`.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Any

from distill.teachers.vote import DISTRIBUTION_FIELD  # a row's soft label: {label: probability}
from edge_runtime.heads import ClassifierHead, head_input
from edge_runtime.layout import ADAPTER_DIR, HEAD_FILE, MERGED_DIR


class ClassifierDataError(ValueError):
    """Rows a classifier cannot train on; the message names the row and the fix."""


def targets_for(task, row: dict[str, Any]) -> list[float]:
    """The row's target distribution over `task.labels`: the teacher's, else one-hot on its label."""
    labels = task.labels
    dist = row.get(DISTRIBUTION_FIELD)
    if isinstance(dist, dict) and dist:
        unknown = sorted(set(dist) - set(labels))
        if unknown:
            raise ClassifierDataError(f"row {row.get('id', '?')}: {DISTRIBUTION_FIELD} names unknown labels {unknown[:3]}")
        total = float(sum(max(0.0, float(v)) for v in dist.values()))
        if total > 0:
            return [max(0.0, float(dist.get(label, 0.0))) / total for label in labels]
    answer = row.get("answer") or {}
    label = answer.get("label") if isinstance(answer, dict) else None
    if label not in labels:
        raise ClassifierDataError(f"row {row.get('id', '?')}: answer label {label!r} is not one of the task's labels; "
                                  f"re-run curate (it drops invalid answers)")
    return [1.0 if x == label else 0.0 for x in labels]


def encode(tokenizer, task, rows: list[dict], max_len: int, val_fraction: float, seed: int):
    """(train, val, dropped): tokenized inputs with their targets; a fixed-seed validation split."""
    examples, dropped = [], 0
    for row in rows:
        ids = tokenizer(head_input(task, row), add_special_tokens=True)["input_ids"]
        if len(ids) > max_len:
            dropped += 1
            continue
        examples.append({"input_ids": ids, "length": len(ids), "targets": targets_for(task, row)})
    if not examples:
        raise ClassifierDataError("no training rows left (all longer than student.training.max_seq_len?)")
    val_idx, train_idx = validation_split(len(examples), val_fraction, seed)
    return [examples[i] for i in train_idx], [examples[i] for i in val_idx], dropped


def validation_split(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(validation, train) positions among `n` kept rows: fixed-seed, so the validation rows can be
    found again after training (scripts/validation_rows.py) to choose settings on them."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = int(round(n * val_fraction)) if n >= 10 else 0
    return order[:n_val], order[n_val:]


class Collator:
    """Right-pads a batch; targets as a float (batch, labels) tensor."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
            mask[i, : len(b["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "labels": torch.tensor([b["targets"] for b in batch], dtype=torch.float32)}


def _trainer_class():
    import torch
    from transformers import Trainer

    class SoftLabelTrainer(Trainer):
        """Cross-entropy against a target distribution (one-hot for plain labels)."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            targets = inputs.pop("labels")
            if model.training:
                self.counted += int(inputs["attention_mask"].sum())
            logits = model(**inputs).logits.float()
            loss = -(targets * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
            return (loss, {"logits": logits}) if return_outputs else loss

    return SoftLabelTrainer


def _args(tr, out_dir: Path, n_train: int, has_val: bool, device: str, learning_rate: float):
    import math

    from transformers import TrainingArguments

    steps_per_epoch = max(1, math.ceil(n_train / (tr.batch_size * tr.grad_accum)))
    total = tr.max_steps or max(1, math.ceil(steps_per_epoch * tr.epochs))
    every = tr.eval_steps or max(1, math.ceil(total / 4))
    return TrainingArguments(
        output_dir=str(out_dir / "checkpoints"), per_device_train_batch_size=tr.batch_size,
        per_device_eval_batch_size=max(tr.batch_size, 16), gradient_accumulation_steps=tr.grad_accum,
        num_train_epochs=tr.epochs, max_steps=tr.max_steps or -1, learning_rate=learning_rate,
        warmup_steps=tr.warmup_ratio, lr_scheduler_type="linear", seed=tr.seed, data_seed=tr.seed,
        use_cpu=device == "cpu", bf16=device == "cuda" and tr.precision != "fp32",
        eval_strategy="steps" if has_val else "no", eval_steps=every, save_strategy="steps", save_steps=every,
        save_total_limit=2, load_best_model_at_end=has_val, metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None, prediction_loss_only=True, logging_steps=max(1, min(10, every)),
        report_to=[], disable_tqdm=True, train_sampling_strategy="group_by_length", dataloader_num_workers=0,
        remove_unused_columns=False, gradient_checkpointing=tr.gradient_checkpointing,
    )


def _logits(model, examples: list[dict], collate: Collator, batch: int = 32):
    import numpy as np
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch):
            inputs = collate(examples[i: i + batch])
            inputs.pop("labels")
            out.append(model(**{k: v.to(model.device) for k, v in inputs.items()}).logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def save_body_as_causal_lm(body, base_path: str, merged_dir: Path, tokenizer) -> None:
    """Write the merged body (the base model without its output layer) into an ordinary
    causal-LM checkpoint of the base (its own tied output layer kept), so GGUF conversion and
    llama.cpp treat it like any student."""
    import torch
    from transformers import AutoModelForCausalLM

    causal = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    missing, unexpected = causal.model.load_state_dict(body.state_dict(), strict=False)
    if unexpected or [k for k in missing if "rotary" not in k]:
        raise RuntimeError(f"the classifier body does not match the base's layout (missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]})")
    tmp = merged_dir.with_name(merged_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    causal.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(merged_dir, ignore_errors=True)
    tmp.rename(merged_dir)


def check_classifier_adapter(adapter_dir: Path, task) -> None:
    """Refuse an init_adapter a classifier cannot continue: a generate run's adapter (no head
    in it), or one whose head scores other labels (its `head.npz` beside it says which)."""
    from distill.train.student import InitAdapterRefused

    adapter_dir = Path(adapter_dir)
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("task_type") != "SEQ_CLS":
        raise InitAdapterRefused(f"student.init_adapter: {adapter_dir} is a generate student's adapter "
                         f"(task_type {config.get('task_type')!r}); a classifier continues a classifier run's "
                         f"train/adapter, or drop init_adapter to start a fresh one")
    head = adapter_dir.parent / HEAD_FILE
    if head.is_file() and ClassifierHead.load(head).labels != list(task.labels):
        raise InitAdapterRefused(f"student.init_adapter: {adapter_dir} was trained for other labels ({head}); continue "
                         f"only with the same task.labels, in the same order, or drop init_adapter")


def train_classifier(student, task, rows: list[dict], out_dir: Path, callbacks: list | None = None) -> dict[str, Any]:
    """Train a LoRA + head classifier on `rows`; write adapter/, merged/, head.npz, train_metrics.json."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from distill.models.resolve import resolve
    from distill.peak_memory import PeakMemory, rss_bytes
    from distill.progress import status
    from distill.train.calibration import ece, fit_temperature
    from distill.train.memory import device_name
    from distill.train.student import learning_rate
    from distill.train.trainer import BarCallback

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr, device = student.training, device_name()
    if student.method != "lora":
        raise ValueError(f"student.head: classifier trains with student.method: lora (got {student.method!r})")
    resolved = resolve(student.model)
    base_path = resolved.hf_path
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train, val, dropped = encode(tokenizer, task, rows, tr.max_seq_len, tr.val_fraction, tr.seed)
    collate = Collator(tokenizer.pad_token_id)
    set_seed(tr.seed)
    from datasets import Dataset

    train_ds, val_ds = Dataset.from_list(train), (Dataset.from_list(val) if val else None)
    lr = learning_rate(student, resolved.preset)
    args = _args(tr, out_dir, len(train), val_ds is not None, device, lr)
    ckpt_dir = out_dir / "checkpoints"
    resume = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    with PeakMemory(device, baseline=rss_bytes()) as peak:
        model = AutoModelForSequenceClassification.from_pretrained(
            base_path, num_labels=len(task.labels), dtype=torch.float32, attn_implementation="sdpa")
        model.config.pad_token_id = tokenizer.pad_token_id
        model.config.id2label = dict(enumerate(task.labels))
        model.config.label2id = {label: i for i, label in enumerate(task.labels)}
        if student.init_adapter is not None:  # go on from a previous classifier run: its LoRA and its head
            from distill.train.student import continue_adapter

            check_classifier_adapter(student.init_adapter, task)
            model = continue_adapter(model, student.init_adapter, base_path)
        else:
            model = get_peft_model(model, LoraConfig(
                r=student.lora.r, lora_alpha=student.lora.alpha, lora_dropout=student.lora.dropout,
                target_modules=student.lora.target_modules, task_type="SEQ_CLS"))
        if device == "cuda":
            model = model.to("cuda")
        from transformers import EarlyStoppingCallback, PrinterCallback

        cbs = [BarCallback(), *(callbacks or [])]
        if tr.early_stopping_patience and val_ds is not None:
            cbs.append(EarlyStoppingCallback(early_stopping_patience=tr.early_stopping_patience))
        trainer = _trainer_class()(model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
                                   data_collator=collate, callbacks=cbs)
        trainer.counted = 0
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=resume)
        seconds = time.perf_counter() - t0

    # ---- calibration on the validation split only
    model = trainer.model
    temperature, calib = 1.0, {}
    if val:
        logits = _logits(model, val, collate)
        targets = np.array([e["targets"] for e in val]).argmax(-1)
        temperature = fit_temperature(logits, targets)
        calib = {"val_accuracy": float((logits.argmax(-1) == targets).mean()),
                 "val_ece_before": ece(logits, targets, 1.0), "val_ece_after": ece(logits, targets, temperature)}

    # ---- save: adapter, merged body (causal-LM checkpoint), head
    adapter_dir, merged_dir, head_path = out_dir / ADAPTER_DIR, out_dir / MERGED_DIR, out_dir / HEAD_FILE
    with status("saving the adapter, the merged body and the head"):
        shutil.rmtree(adapter_dir, ignore_errors=True)
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        merged = model.merge_and_unload()
        weight = merged.score.weight.detach().float().cpu().numpy()
        ClassifierHead(weight, list(task.labels), temperature).save(head_path)
        save_body_as_causal_lm(merged.model, base_path, merged_dir, tokenizer)
    history = trainer.state.log_history
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    metrics = {
        "head": str(head_path), "adapter_dir": str(adapter_dir), "merged_dir": str(merged_dir),
        "method": student.method, "student_head": "classifier", "device": device, "base_model": base_path,
        "train_rows": len(train), "val_rows": len(val), "dropped_too_long": dropped,
        "soft_label_rows": sum(1 for r in rows if isinstance(r.get(DISTRIBUTION_FIELD), dict)),
        "steps": trainer.state.global_step, "train_loss": float(result.training_loss),
        "eval_loss": trainer.state.best_metric if trainer.state.best_metric is not None else (min(evals) if evals else None),
        "eval_losses": evals, "best_checkpoint": trainer.state.best_model_checkpoint, "resumed_from": resume,
        "trained_tokens": trainer.counted, "train_seconds": seconds,
        "tokens_per_s": trainer.counted / seconds if seconds else 0.0,
        "temperature": temperature, **calib, "learning_rate": lr,
        "duration_s": time.perf_counter() - started, "peak_memory_bytes": peak.peak_bytes,
        "peak_memory_method": peak.method, "template": "classifier-input",
    }
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    return metrics
