"""`train_student`: LoRA, QLoRA or full SFT of the student on the curated teacher answers.

It is the one call the pipeline's train stage makes. It tokenizes the rows
with the task spec (loss on the answer only), checks the run fits in memory, trains with
TRL's SFTTrainer (resuming from `out_dir/checkpoints/` after a kill), keeps the best
checkpoint by validation loss, and writes the adapter, the merged model and the metrics.
With `student.training.distillation`, a local teacher sharing the student's tokenizer adds
its token distributions to the loss (`distill.train.distillation`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from distill import distributed
from distill.train.data import encode_rows
from edge_runtime.layout import ADAPTER_DIR, MERGED_DIR


class QLoRANeedsCUDA(RuntimeError):
    """QLoRA's 4-bit kernels (bitsandbytes) need a CUDA GPU."""

    refusal = True


class InitAdapterRefused(RuntimeError, ValueError):
    """student.init_adapter names an adapter this run cannot continue (another base model, another
    head or label set): refused before training, the CLI prints the message, not a traceback."""

    refusal = True


def learning_rate(student, preset: dict | None) -> float:
    """The recipe's learning rate, else the preset's (2e-5 for full fine-tuning): shared by every trainer."""
    if student.training.learning_rate:
        return student.training.learning_rate
    if student.method == "full":
        return 2e-5
    return float((preset or {}).get("learning_rate", 2e-4))


def load_student(base_path: str, method: str, device: str, dtype, gradient_checkpointing: bool = False):
    """The base model; for QLoRA quantized to NF4 (double quant) and prepared the PEFT way.

    QLoRA computes in bf16 on CUDA and in float32 on CPU (bitsandbytes' CPU backend; only
    tests use it, see `train_student(allow_cpu_qlora=...)`). `prepare_model_for_kbit_training`
    freezes the base, keeps the non-quantized parameters (norms, embedding) in float32 and
    turns on gradient checkpointing when the recipe asks for it."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": "sdpa"}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32,
        )
        # one whole copy per process: this process's GPU under `accelerate launch`
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0)) if device == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(base_path, **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        if device != "cuda":
            # bitsandbytes' CPU backend repacks NF4 weights for an AVX512-BF16 inference kernel at the
            # first eval-mode forward (e.g. the trainer's evaluation); that layout has no backward to
            # the layer input and drops double quant, so later training steps would be wrong
            for module in model.modules():
                if hasattr(module, "support_avx512bf16_for_cpu"):
                    module.support_avx512bf16_for_cpu = False
    elif device == "cuda":
        model = model.to("cuda")
    return model


def continue_adapter(model, adapter_dir: Path, base_path: str):
    """`model` with a previous run's LoRA adapter loaded trainable. Refused when the adapter was
    trained on another base: its deltas mean nothing on different weights."""
    from peft import PeftModel

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))
    trained_on = config.get("base_model_name_or_path")
    if trained_on and Path(trained_on).resolve() != Path(base_path).resolve():
        raise InitAdapterRefused(f"student.init_adapter: {adapter_dir} was trained on {trained_on}, the student is {base_path}; "
                         f"continue with the same student.model, or drop init_adapter to start a fresh LoRA")
    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=True)


def train_student(student, task, rows: list[dict], out_dir: Path, callbacks: list | None = None, *,
                  allow_cpu_qlora: bool = False) -> dict[str, Any]:
    """Train `student` on `rows`; write adapter/, merged/, train_metrics.json under `out_dir`.

    QLoRA without CUDA is refused (`QLoRANeedsCUDA`) unless `allow_cpu_qlora`: bitsandbytes'
    CPU backend runs it, slowly, which only tests want (to run the real QLoRA path)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoConfig, AutoTokenizer, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from distill.models.resolve import resolve
    from distill.progress import status
    from distill.peak_memory import PeakMemory, rss_bytes
    from distill.train.memory import TrainingShape, check_fits, device_name, estimate
    from distill.train.faq_views import applies, relabelled_none
    from distill.train.merge import merge_adapter
    from distill.train.trainer import TrainerOptions, run_trainer, sft_config

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tr = student.training
    device = device_name()
    if student.method == "qlora" and device != "cuda" and not allow_cpu_qlora:
        raise QLoRANeedsCUDA(
            "student.method: qlora needs a CUDA GPU (bitsandbytes 4-bit NF4 kernels); this machine has none. "
            "Use student.method: lora on CPU."
        )
    resolved = resolve(student.model)
    base_path = resolved.hf_path
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    faq = None
    if applies(task):  # faq: candidate order and "none" labels in training prompts (faq_views.py)
        from distill.recipe import FaqTrainingConfig

        faq = tr.faq or FaqTrainingConfig()
    enc = encode_rows(tokenizer, task, rows, tr.max_seq_len, tr.val_fraction, tr.seed, faq=faq)
    hf_config = AutoConfig.from_pretrained(base_path)
    dist = tr.distillation
    teacher_path = teacher_config = None
    if dist is not None:  # refuse a teacher with another tokenizer before any weights are loaded
        from distill.train.distillation import check_same_tokenizer

        teacher_path = resolve(dist.teacher_model).hf_path
        teacher_tok = AutoTokenizer.from_pretrained(teacher_path)
        if teacher_tok.pad_token is None:
            teacher_tok.pad_token = teacher_tok.eos_token
        teacher_config = AutoConfig.from_pretrained(teacher_path)
        check_same_tokenizer(tokenizer, teacher_tok, hf_config, teacher_config,
                             f"the student {student.model!r}", f"the teacher {dist.teacher_model!r}")

    # ---- does it fit? (before any weights are loaded)
    strategy, note = distributed.effective_strategy(device)
    if note and distributed.is_main():
        from distill.progress import console

        console.log(f"warning: {note}")
    gpu_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    weight_dtype = torch.bfloat16 if (gpu_bf16 and student.method != "full") else torch.float32
    act_bytes = 2 if (tr.precision == "bf16" or (tr.precision == "auto" and gpu_bf16)) else 4
    # batches are grouped by length and the longest comes first: that batch sets the peak
    longest = sorted(enc.train, key=lambda e: -e["length"])[: tr.batch_size]
    answers = sum(sum(1 for x in e["labels"][1:] if x != -100) for e in longest)
    shape = TrainingShape(
        student.method, student.lora.r, student.lora.target_modules, len(longest), longest[0]["length"], answers,
        tr.gradient_checkpointing, tr.loss_on_answer_only_head, weight_bytes=torch.finfo(weight_dtype).bits // 8,
        act_bytes=act_bytes, device=device, distill_loss=dist.loss if dist else None, strategy=strategy,
        processes=distributed.world_size(), sharing_device=distributed.local_world_size() if device == "cpu" else 1,
    )
    est = estimate(hf_config, shape, teacher_config=teacher_config)
    check_fits(est, {"method": student.method, **tr.model_dump()})

    # ---- train
    set_seed(tr.seed)
    cols = ("input_ids", "labels", "length")
    train_ds = Dataset.from_list([{k: e[k] for k in cols} for e in enc.train])
    val_ds = Dataset.from_list([{k: e[k] for k in cols} for e in enc.val]) if enc.val else None
    args = sft_config(tr, out_dir, len(enc.train), val_ds is not None, device, student.method)
    args.learning_rate = learning_rate(student, resolved.preset)
    peft_config = None
    if student.method in ("lora", "qlora"):
        peft_config = LoraConfig(
            r=student.lora.r, lora_alpha=student.lora.alpha, lora_dropout=student.lora.dropout,
            target_modules=student.lora.target_modules, task_type="CAUSAL_LM",
        )
    ckpt_dir = out_dir / "checkpoints"
    resume = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    with PeakMemory(device, baseline=rss_bytes()) as peak:
        model = load_student(base_path, student.method, device, weight_dtype, tr.gradient_checkpointing)
        if student.init_adapter is not None:  # go on from a previous run's adapter, not a fresh LoRA
            model, peft_config = continue_adapter(model, student.init_adapter, base_path), None
        teacher = None
        if dist is not None:
            from distill.train.distillation import load_teacher

            teacher = load_teacher(teacher_path, weight_dtype)
        options = TrainerOptions(peft_config, tr.loss_on_answer_only_head, tr.early_stopping_patience, resume,
                                 list(callbacks or []), teacher=teacher, distillation=dist)
        trainer, figures = run_trainer(model, tokenizer, args, train_ds, val_ds, options)
        del teacher

    # ---- save: adapter (LoRA/QLoRA) and the merged model; under several processes the main one only
    adapter_dir, merged_dir = out_dir / ADAPTER_DIR, out_dir / MERGED_DIR
    if not distributed.is_main():
        del trainer, model
        distributed.barrier()  # the main process saves, merges and writes the metrics meanwhile
        return {**figures, "device": device, "rank": distributed.rank()}
    with status("saving the adapter and the merged model"):
        if student.method in ("lora", "qlora"):
            if adapter_dir.exists():
                shutil.rmtree(adapter_dir)
            trainer.model.save_pretrained(adapter_dir)
            tokenizer.save_pretrained(adapter_dir)
            enc.format.save(adapter_dir)
            del trainer, model
            merge_adapter(base_path, adapter_dir, merged_dir, dtype=torch.float32 if device == "cpu" else torch.bfloat16)
        else:
            tmp = merged_dir.with_name("merged.partial")
            if tmp.exists():
                shutil.rmtree(tmp)
            trainer.model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            enc.format.save(tmp)
            if merged_dir.exists():
                shutil.rmtree(merged_dir)
            tmp.rename(merged_dir)
            adapter_dir = None

    metrics = {
        "adapter_dir": str(adapter_dir) if adapter_dir else None,
        "merged_dir": str(merged_dir),
        "method": student.method,
        "device": device,
        "base_model": base_path,
        "train_rows": len(enc.train),
        "val_rows": len(enc.val),
        "dropped_too_long": enc.dropped,
        **({"faq_views": faq.model_dump(), "faq_relabelled_none": relabelled_none(rows, task, faq)} if faq else {}),
        **figures,
        "learning_rate": args.learning_rate,
        "duration_s": time.perf_counter() - started,
        "memory_estimate_bytes": est.total_bytes,
        "memory_estimate_parts": est.parts,
        "memory_available_bytes": est.available_bytes,
        "memory_estimate_strategy": {"strategy": est.strategy, "processes": est.processes},  # parts are per process
        "peak_memory_bytes": peak.peak_bytes,
        "peak_memory_method": peak.method,
        "template": enc.format.kind,
        "distillation": {**dist.model_dump(), "teacher_path": teacher_path} if dist else None,
    }
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    distributed.barrier()
    return metrics
