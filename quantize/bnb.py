"""bitsandbytes NF4 / INT8 (LLM.int8) loading and pre-quantized checkpoints, for GPU servers.

Why: a student served by transformers (or evaluated exactly as QLoRA trained it) can be
loaded in 4 or 8 bits with no conversion step. It is not the device format: CPUs and edge
boxes run GGUF through llama.cpp (`quantize gguf`). See docs/bnb.md for when to choose it.

bitsandbytes 0.50 also has a CPU backend (NF4 and INT8 both load and answer on CPU); on
CUDA it is the fast path. On a CPU with AVX512-BF16 it repacks NF4 weights for its fused
kernel at the first forward and only approximately undoes that when saving, so `save_bnb`
saves straight after loading, before any forward has run.
"""

from __future__ import annotations

import logging
import shutil
import time
from functools import lru_cache
from pathlib import Path

from quantize.gguf import MB, OutputExists, atomic_dir, read_hf_config, status

KINDS = ("nf4", "int8")
SIDECAR_FILES = ("template.json",)  # training's prompt format: the student answers as it was trained
GGUF_HINT = ("for CPU or edge devices use GGUF through llama.cpp instead: "
             "`quantize gguf HF_DIR --out DIR --types q4_k_m`")


class BnbUnavailable(RuntimeError):
    """This machine cannot run the asked bitsandbytes kind; the message says what is missing."""


def _check_kind(kind: str) -> str:
    kind = str(kind).lower()
    if kind not in KINDS:
        raise ValueError(f"bitsandbytes kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind


class _CastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "inputs will be cast" not in record.getMessage()


_CAST_NOTICE = _CastNotice()  # one instance: addFilter ignores a filter it already has


def _import_bnb():
    # Its CPU backend tries to fetch an optional faster NF4 kernel from the Hub and warns when it
    # cannot; LLM.int8 on CPU warns at every matmul that it casts float32 inputs to float16.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_CAST_NOTICE)
    try:
        import bitsandbytes
    except ImportError as exc:
        raise BnbUnavailable(
            f"bitsandbytes is not installed ({exc}); pip install bitsandbytes (or 'edge-distill[full]'), "
            f"or {GGUF_HINT}"
        ) from None
    return bitsandbytes


@lru_cache(maxsize=None)
def _cpu_probe(kind: str) -> str | None:
    """None when bitsandbytes runs `kind` on this CPU (a real quantized matmul is done), else why not."""
    import torch

    bnb = _import_bnb()
    torch.manual_seed(0)
    x, w = torch.randn(2, 64), torch.randn(64, 64)
    try:
        if kind == "nf4":
            layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        else:
            layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False)
        layer.weight = type(layer.weight)(w, requires_grad=False, **({"quant_type": "nf4"} if kind == "nf4" else {}))
        layer = layer.to("cpu")
        quantized = (getattr(layer.weight, "quant_state", None) is not None if kind == "nf4"
                     else layer.weight.dtype == torch.int8)
        if not quantized:
            return f"its CPU backend left the {kind} weights unquantized"
        with torch.no_grad():
            y = layer(x).float()
        err = float((y - x @ w.T).norm() / (x @ w.T).norm())
    except Exception as exc:  # any failure of the backend means "not here"
        return f"{type(exc).__name__}: {exc}"
    if not err < 0.25:
        return f"its CPU {kind} matmul is wrong (relative error {err:.2f})"
    return None


def check_bnb_device(kind: str) -> str:
    """The device `kind` runs on here ("cuda" or "cpu"), or BnbUnavailable naming what is missing."""
    import torch

    kind = _check_kind(kind)
    bnb = _import_bnb()
    if torch.cuda.is_available():
        return "cuda"
    why = _cpu_probe(kind)
    if why is None:
        return "cpu"
    raise BnbUnavailable(
        f"bitsandbytes {kind} cannot run here: no CUDA GPU is visible and bitsandbytes "
        f"{getattr(bnb, '__version__', '?')} has no working CPU backend for {kind} ({why}). "
        f"Run it on a CUDA GPU server, or {GGUF_HINT}"
    )


def bnb_config(kind: str, compute_dtype=None):
    """transformers' BitsAndBytesConfig for `kind`: NF4 with double quantisation (compute in
    bf16 on CUDA, float32 on CPU unless `compute_dtype` says), or LLM.int8."""
    import torch
    from transformers import BitsAndBytesConfig

    kind = _check_kind(kind)
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    if compute_dtype is None:
        compute_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def saved_kind(hf_dir: Path) -> str | None:
    """The kind of a pre-quantized bitsandbytes checkpoint (from its config.json), else None."""
    q = read_hf_config(Path(hf_dir)).get("quantization_config") or {}
    if q.get("quant_method") != "bitsandbytes":
        return None
    if q.get("load_in_8bit") or q.get("_load_in_8bit"):
        return "int8"
    return q.get("bnb_4bit_quant_type", "nf4")


def load_bnb(hf_dir: str | Path, kind: str, device: str | None = None):
    """(model, tokenizer): a full-precision HF folder quantized while loading, or a checkpoint
    `save_bnb` wrote (loaded as saved; its kind must match)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_dir, kind = Path(hf_dir), _check_kind(kind)
    device = device or check_bnb_device(kind)
    existing = saved_kind(hf_dir)
    if existing is not None and existing != kind:
        raise ValueError(f"{hf_dir} is already a bitsandbytes {existing} checkpoint; load it with kind {existing!r}")
    kwargs = {} if existing else {"quantization_config": bnb_config(kind)}
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=dtype, device_map={"": device}, **kwargs).eval()
    return model, AutoTokenizer.from_pretrained(str(hf_dir))


def save_bnb(hf_dir: str | Path, kind: str, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write a pre-quantized bitsandbytes checkpoint (weights, config with its
    quantization_config, tokenizer, training's prompt format) to `out_dir`, atomically."""
    hf_dir, out_dir, kind = Path(hf_dir), Path(out_dir), _check_kind(kind)
    read_hf_config(hf_dir)
    if saved_kind(hf_dir):
        raise ValueError(f"{hf_dir} is already bitsandbytes-quantized; give the full-precision (merged) student")
    if out_dir.exists() and not overwrite:
        raise OutputExists(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    start = time.perf_counter()
    model, tokenizer = load_bnb(hf_dir, kind)
    footprint = model.get_memory_footprint()
    with atomic_dir(out_dir, overwrite) as tmp:
        model.save_pretrained(str(tmp))  # before any forward: see the module docstring
        tokenizer.save_pretrained(str(tmp))
        for name in SIDECAR_FILES:
            if (hf_dir / name).is_file():
                shutil.copy2(hf_dir / name, tmp / name)
    size = checkpoint_bytes(out_dir)
    status(f"wrote {out_dir} (bitsandbytes {kind}: {size / MB:.1f} MiB of weights, "
            f"{footprint / MB:.1f} MiB in memory) in {time.perf_counter() - start:.1f} s")
    return out_dir


def checkpoint_bytes(model_dir: Path) -> int:
    """Bytes of the weight files in a checkpoint folder."""
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))
