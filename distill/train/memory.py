"""Will it fit? Peak-memory estimate before training, and the measured peak after.

The estimate adds up what training holds at its peak: the weights in their dtype, the
trainable parameters' gradients and AdamW state, the activations autograd keeps for the
batch (all layers, or one layer plus layer inputs with gradient checkpointing), and the
output layer's logits (answer positions only, or every position). It is compared with
the device's free memory before any weights are loaded; if it will not fit we stop and
name the setting to change. The measured peak is recorded next to it in train_metrics.json.

The measured peak comes from `distill.peak_memory.PeakMemory` (on CPU the resident-set
high-water mark minus the resident size before the model was loaded; on CUDA
torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

# floats kept per token per decoder layer, as multiples of (hidden, attention width, MLP width).
# Derived from the tensors a pre-norm decoder layer saves for backward (norm inputs/outputs,
# q/k/v with k/v expanded to the query heads, attention output, gate/up/activation/product),
# then checked against measured peaks (tests/distill/train/test_memory.py).
ACT_HIDDEN, ACT_ATTN, ACT_MLP = 10, 6, 5
LOGIT_COPIES_ANSWER_ONLY = 3  # logits, log-softmax, its gradient
# distillation, per answer row x vocab (fp32): teacher logits and log-probs, the student's
# log-probs, the elementwise divergence and its gradient; JSD adds the stacked mixture and two KLs
KD_COPIES_KL, KD_COPIES_JSD = 5, 13  # measured: tiny Gemma, 8 receipts, batch 2 (estimate within 10%)
LOGIT_COPIES_FULL = 4  # + the shifted copy transformers' loss makes
OVERHEAD_BYTES = 150 * 2**20  # the trainer, optimizer bookkeeping, allocator slack


class WontFit(RuntimeError):
    """Training would run out of memory; the message says which setting to change."""

    refusal = True  # the CLI prints the message, not a traceback


# What each multi-process strategy splits across its N processes (everything else every process holds
# whole). DDP replicates all and adds its gradient buckets (a second copy of the gradients); ZeRO-2
# shards gradients and optimizer state; ZeRO-3 and FSDP full sharding also the weights, gathering
# one layer at a time (two with prefetch); FSDP SHARD_GRAD_OP keeps the weights whole from forward to
# backward, so at the peak they count whole. Activations and logits belong to each process's batch.
SHARDED = {
    "single": (),
    "ddp": (),
    "zero2": ("gradients", "optimizer"),
    "fsdp-grad-op": ("trainable_weights", "gradients", "optimizer"),
    "zero3": ("weights", "trainable_weights", "gradients", "optimizer"),
    "fsdp": ("weights", "trainable_weights", "gradients", "optimizer"),
}
GATHERED_LAYERS = 2  # FSDP/ZeRO-3: the layer being computed and the one prefetched


@dataclass
class MemoryEstimate:
    """Peak bytes of ONE training process (`parts` per process); `processes` of them under `strategy`."""

    total_bytes: int
    parts: dict[str, int] = field(default_factory=dict)
    device: str = "cpu"
    available_bytes: int | None = None
    strategy: str = "single"
    processes: int = 1
    sharing_device: int = 1  # processes whose peaks share `available_bytes` (all of them on one CPU host)

    def as_dict(self) -> dict:
        return asdict(self)


def _gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def count_params(hf_config, target_modules, r: int) -> tuple[int, int, int]:
    """(total parameters, of which in Linear layers (quantizable), LoRA parameters), without allocating."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    linear, lora = 0, 0
    out_emb = model.get_output_embeddings()
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or mod is out_emb:
            continue
        linear += mod.weight.numel()
        leaf = name.rsplit(".", 1)[-1]
        if target_modules == "all-linear" or leaf in target_modules or name in target_modules:
            lora += r * (mod.in_features + mod.out_features)
    return total, linear, lora


@dataclass(frozen=True)
class TrainingShape:
    """What sets one training process's peak: the recipe's method and LoRA, the peak batch, the
    dtypes, and the launch. One object for `estimate` instead of fifteen loose arguments."""

    method: str  # lora | qlora | full
    lora_r: int
    target_modules: Any  # "all-linear" or module names
    batch_size: int
    seq_len: int  # tokens per row of the peak batch
    answer_tokens: int  # labelled tokens in that batch
    gradient_checkpointing: bool
    answer_only_head: bool
    weight_bytes: int  # bytes per weight in the loaded dtype
    act_bytes: int  # bytes per activation
    device: str = "cpu"
    distill_loss: str | None = None  # with a teacher: kl or jsd
    strategy: str = "single"  # a key of SHARDED
    processes: int = 1
    sharing_device: int = 1  # processes whose peaks share one device's memory


def estimate(hf_config, shape: TrainingShape, teacher_config=None) -> MemoryEstimate:
    """Peak training memory for one batch of `batch_size` x `seq_len` tokens with
    `answer_tokens` labelled tokens in it. With a distillation `teacher_config`, add the
    frozen teacher's weights (in the student's dtype), one teacher layer's activations
    (no_grad keeps none) and its logits plus the divergence's buffers at the answer rows.
    Under several `processes` the parts are per process: `SHARDED[strategy]` are divided by
    `processes` (a frozen teacher is never sharded: it is not part of the wrapped model)."""
    method, lora_r, target_modules = shape.method, shape.lora_r, shape.target_modules
    batch_size, seq_len, answer_tokens = shape.batch_size, shape.seq_len, shape.answer_tokens
    weight_bytes, act_bytes, strategy, processes = shape.weight_bytes, shape.act_bytes, shape.strategy, shape.processes
    cfg = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    total, linear, lora = count_params(hf_config, target_modules, lora_r)
    parts: dict[str, int] = {}
    if method == "qlora":
        # NF4 + double-quant constants; the rest (norms, embedding) float32 after prepare_model_for_kbit_training
        parts["weights"] = int(linear * 0.5 * 1.03 + (total - linear) * 4)
    else:
        parts["weights"] = total * weight_bytes
    trainable = total if method == "full" else lora
    state_bytes = 4 if method != "full" else weight_bytes
    parts["trainable_weights"] = 0 if method == "full" else trainable * 4
    parts["gradients"] = trainable * state_bytes
    parts["optimizer"] = trainable * 4 * 2  # AdamW exp_avg and exp_avg_sq
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    attn = cfg.num_attention_heads * getattr(cfg, "head_dim", h // cfg.num_attention_heads)
    per_layer_token = (ACT_HIDDEN * h + ACT_ATTN * attn + ACT_MLP * inter) * act_bytes
    tokens = batch_size * seq_len
    if shape.gradient_checkpointing:
        parts["activations"] = tokens * (layers * h * act_bytes + per_layer_token)
    else:
        parts["activations"] = tokens * layers * per_layer_token
    rows, copies = (answer_tokens, LOGIT_COPIES_ANSWER_ONLY) if shape.answer_only_head else (tokens, LOGIT_COPIES_FULL)
    parts["logits"] = rows * cfg.vocab_size * 4 * copies
    if teacher_config is not None:
        tcfg = teacher_config.get_text_config() if hasattr(teacher_config, "get_text_config") else teacher_config
        parts["teacher_weights"] = count_params(teacher_config, [], 0)[0] * weight_bytes
        t_attn = tcfg.num_attention_heads * getattr(tcfg, "head_dim", tcfg.hidden_size // tcfg.num_attention_heads)
        parts["teacher_activations"] = tokens * (ACT_HIDDEN * tcfg.hidden_size + ACT_ATTN * t_attn
                                                 + ACT_MLP * tcfg.intermediate_size) * act_bytes
        copies = KD_COPIES_JSD if shape.distill_loss == "jsd" else KD_COPIES_KL
        parts["distillation_logits"] = answer_tokens * cfg.vocab_size * 4 * copies
    parts["overhead"] = OVERHEAD_BYTES
    if strategy not in SHARDED:
        raise ValueError(f"unknown strategy {strategy!r}; one of {', '.join(SHARDED)}")
    if processes > 1:
        for name in SHARDED[strategy]:
            parts[name] = -(-parts[name] // processes)
        if strategy == "ddp":
            parts["ddp_buckets"] = parts["gradients"]  # the reducer's flat copy of the gradients
        if "weights" in SHARDED[strategy]:
            per_layer = (total - cfg.vocab_size * h) // max(layers, 1)
            parts["gathered_layers"] = GATHERED_LAYERS * per_layer * weight_bytes
    return MemoryEstimate(int(sum(parts.values())), parts, shape.device, strategy=strategy, processes=processes,
                          sharing_device=shape.sharing_device if processes > 1 else 1)


def available_bytes(device: str) -> int:
    if device.startswith("cuda"):
        free, _ = torch.cuda.mem_get_info()
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(est: MemoryEstimate, settings: dict, margin: float = 0.9) -> MemoryEstimate:
    """Raise WontFit, naming the settings to change, if the estimate exceeds free memory."""
    est.available_bytes = available_bytes(est.device)
    if est.total_bytes * est.sharing_device <= est.available_bytes * margin:
        return est
    big = sorted(est.parts.items(), key=lambda kv: -kv[1])[:3]
    hints = [*_process_hints(est),f"student.training.batch_size (now {settings['batch_size']}): halve it, and raise grad_accum to keep the effective batch",
             f"student.training.max_seq_len (now {settings['max_seq_len']}): shorter inputs"]
    if not settings.get("gradient_checkpointing"):
        hints.append("student.training.gradient_checkpointing: true (activations of one layer at a time)")
    if not settings.get("loss_on_answer_only_head"):
        hints.append("student.training.loss_on_answer_only_head: true (logits only at answer tokens)")
    if settings.get("method") != "qlora":
        hints.append("student.method: qlora (4-bit base weights; needs a CUDA GPU)" if est.device.startswith("cuda")
                     else "student.method: lora, or a GPU with QLoRA (4-bit base weights)")
    need = f"about {_gb(est.total_bytes)}"
    if est.processes > 1:
        need += f" per process ({est.processes} processes, {est.strategy})"
        if est.sharing_device > 1:
            need += f", {_gb(est.total_bytes * est.sharing_device)} for the {est.sharing_device} sharing this {est.device}"
    raise WontFit(
        f"training needs {need} on {est.device} but only {_gb(est.available_bytes)} is free "
        f"(largest parts: {', '.join(f'{k} {_gb(v)}' for k, v in big)}). Change one of:\n  - " + "\n  - ".join(hints)
    )


def _process_hints(est: MemoryEstimate) -> list[str]:
    """The launch settings that change the per-process share, first when they are the cheaper fix."""
    n, hints = est.processes, []
    if est.sharing_device > 1:
        hints.append(f"accelerate launch --num_processes (now {est.sharing_device} on this machine): on {est.device} "
                     "every process holds its own copy in the same memory; use fewer")
    if est.strategy in ("single", "ddp") and est.device.startswith("cuda"):
        hints.append("accelerate launch --config_file recipes/accelerate/fsdp.yaml: FSDP splits weights, gradients "
                     f"and optimizer state across the GPUs ({est.strategy} keeps a whole copy on each)")
    elif est.strategy == "zero2":
        hints.append("recipes/accelerate/deepspeed_zero3.yaml: ZeRO-3 splits the weights too (ZeRO-2 keeps them whole)")
    elif est.strategy == "fsdp-grad-op":
        hints.append("fsdp_reshard_after_forward: true (full sharding; weights stay split between forward and backward)")
    if est.strategy in ("fsdp", "zero3"):
        hints.append(f"accelerate launch --num_processes (now {n}): each process holds 1/{n} of weights, gradients "
                     "and optimizer state; or fsdp_offload_params: true / offload_param_device: cpu")
    return hints


def device_name() -> str:
    return "cuda" if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != "" else "cpu"
