"""The student trainer: TRL's SFTTrainer with PEFT, an answer-only output layer and our progress bar.

One path for every method (LoRA, QLoRA, full) and device (CPU, one GPU, `accelerate
launch` for many): the recipe's numbers become an `SFTConfig`, the data is tokenized by
`distill.train.data` (labels only on the answer), and `AnswerOnlySFTTrainer` swaps the
loss for the one that computes the output layer only at answer tokens.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from distill.progress import Bar
from distill.train.loss import answer_only_loss


class AnswerOnlySFTTrainer(SFTTrainer):
    """SFTTrainer whose loss computes the output layer at answer positions only (same value)."""

    def __init__(self, *args, answer_only_head: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.answer_only_head = answer_only_head
        self.counted = {"tokens": 0, "answer_tokens": 0}

    def _count(self, model, inputs) -> None:
        if model.training:
            mask = inputs.get("attention_mask")
            self.counted["tokens"] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            self.counted["answer_tokens"] += int((inputs["labels"][:, 1:] != -100).sum())

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._count(model, inputs)
        if not self.answer_only_head:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = answer_only_loss(
            model, inputs["input_ids"], inputs["labels"], inputs.get("attention_mask"), inputs.get("position_ids"),
            num_items_in_batch,
        )
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return (loss, {"loss": loss.detach()}) if return_outputs else loss


class BarCallback(TrainerCallback):
    """Steps with rate and ETA on the shared rich bar; last train/eval loss as info."""

    def __init__(self):
        self.bar: Bar | None = None
        self.info: dict[str, float] = {}

    def on_train_begin(self, args, state, control, **kw):
        self.bar = Bar("training", state.max_steps, unit="step").__enter__()
        if state.global_step:
            self.bar.advance(state.global_step, info=f"resumed at step {state.global_step}")

    def on_log(self, args, state, control, logs=None, **kw):
        for key in ("loss", "eval_loss"):
            if logs and key in logs:
                self.info[key] = logs[key]

    def on_step_end(self, args, state, control, **kw):
        if self.bar:
            self.bar.advance(1, info="  ".join(f"{k} {v:.4f}" for k, v in self.info.items()))

    def on_train_end(self, args, state, control, **kw):
        if self.bar:
            self.bar.__exit__(None, None, None)
            self.bar = None


def sft_config(training, out_dir: Path, n_train: int, has_val: bool, device: str, method: str) -> SFTConfig:
    """The recipe's training section as TRL/transformers arguments."""
    steps_per_epoch = max(1, math.ceil(n_train / (training.batch_size * training.grad_accum)))
    total = training.max_steps or max(1, math.ceil(steps_per_epoch * training.epochs))
    every = training.eval_steps or max(1, math.ceil(total / 4))
    bf16 = training.precision == "bf16" or (
        training.precision == "auto" and device == "cuda" and torch.cuda.is_bf16_supported()
    )
    return SFTConfig(
        output_dir=str(out_dir / "checkpoints"),
        per_device_train_batch_size=training.batch_size,
        per_device_eval_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps or -1,
        learning_rate=training.learning_rate,
        warmup_steps=training.warmup_ratio,
        lr_scheduler_type="linear",
        seed=training.seed,
        data_seed=training.seed,
        bf16=bf16,
        use_cpu=device == "cpu",
        gradient_checkpointing=training.gradient_checkpointing,
        eval_strategy="steps" if has_val else "no",
        eval_steps=every,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=2,  # the best and the last: resume needs the last, the result the best
        load_best_model_at_end=has_val,
        metric_for_best_model="eval_loss" if has_val else None,
        greater_is_better=False if has_val else None,
        prediction_loss_only=True,
        logging_steps=max(1, min(10, every)),
        report_to=[],
        disable_tqdm=True,
        max_length=training.max_seq_len,
        packing=False,
        padding_free=False,  # on CPU/SDPA a block-diagonal mask costs more than the padding it saves
        train_sampling_strategy="group_by_length",  # similar lengths per batch: little padding
        completion_only_loss=None,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        save_only_model=False,
    )


@dataclass
class TrainerOptions:
    """How `run_trainer` trains beyond its SFTConfig, as one object instead of seven loose arguments."""

    peft_config: Any = None  # a LoRA config for a fresh adapter; None for a full fine-tune or a continued adapter
    answer_only_head: bool = True  # logits only at answer tokens (student.training.loss_on_answer_only_head)
    patience: int | None = None  # early stopping after this many evaluations without improvement
    resume_from: str | None = None  # a checkpoint folder to resume from
    callbacks: list = field(default_factory=list)
    teacher: Any = None  # a loaded teacher model: the loss also matches its token distributions
    distillation: Any = None  # the recipe's distillation settings, with `teacher`


def run_trainer(model, tokenizer, args: SFTConfig, train_ds, val_ds, options: TrainerOptions) -> tuple[Any, dict]:
    """Train (resuming when a checkpoint is given) and return the trainer and its figures.

    With a `teacher` model and the recipe's `distillation` settings, the loss also matches the
    teacher's token distributions (`distill.train.distillation.DistillationSFTTrainer`)."""
    o = options
    patience, resume_from, teacher = o.patience, o.resume_from, o.teacher
    from transformers import EarlyStoppingCallback, PrinterCallback

    cbs = [BarCallback(), *o.callbacks]
    if patience and val_ds is not None:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=patience))
    extra: dict[str, Any] = {}
    trainer_cls = AnswerOnlySFTTrainer
    if teacher is not None:
        from distill.train.distillation import DistillationSFTTrainer

        trainer_cls, extra = DistillationSFTTrainer, {"teacher": teacher, "distillation": o.distillation}
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        peft_config=o.peft_config,
        callbacks=cbs,
        answer_only_head=o.answer_only_head,
        **extra,
    )
    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    history = trainer.state.log_history
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    from distill.distributed import gather

    per_process = gather(dict(trainer.counted))
    counted = {k: sum(p[k] for p in per_process) for k in trainer.counted}  # all processes together
    figures = {
        "processes": trainer.accelerator.num_processes,
        # tokens each process trained on this run (rank order): every process trains its own share
        "trained_tokens_per_process": [p["tokens"] for p in per_process],
        "steps": trainer.state.global_step,
        "train_loss": float(result.training_loss),
        "eval_loss": trainer.state.best_metric if trainer.state.best_metric is not None else (min(evals) if evals else None),
        "eval_losses": evals,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "resumed_from": resume_from,
        "trained_tokens": counted["tokens"],
        "answer_tokens": counted["answer_tokens"],
        "train_seconds": seconds,
        "tokens_per_s": counted["tokens"] / seconds if seconds else 0.0,
        "answer_tokens_per_s": counted["answer_tokens"] / seconds if seconds else 0.0,
        "stopped_early": bool(patience) and trainer.state.global_step < trainer.state.max_steps,
    }
    if teacher is not None:  # the two parts of the mixed loss, as logged
        figures["ce_losses"] = [h["ce_loss"] for h in history if "ce_loss" in h]
        figures["kd_losses"] = [h["kd_loss"] for h in history if "kd_loss" in h]
    return trainer, figures

