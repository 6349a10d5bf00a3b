"""Quantized base + F16 LoRA adapter: the `<type>+lora` artifacts.

Merging a LoRA into the base and quantizing the sum works when the base is a full-precision
checkpoint. It fails when the base was itself dequantized from a quantized GGUF (the offline
gemma-3-270m): its weights already sit on the 4/5-bit grid, and re-quantizing base + a small
delta snaps most weights back to their old grid points, so the training is rounded away
(measured on the receipts-small student, the quickstart until 2026-12-03: merged Q4_K_M 0.302 field accuracy against F16's 0.594).
Keeping the adapter apart avoids that: the base is quantized on its own (for a grid-aligned
base that is close to lossless) and the adapter stays F16, applied by llama.cpp at run time
(`Llama(lora_path=...)`). It is also what a device that serves several tasks wants: one base,
one small adapter per task.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from edge_runtime.gguf_types import adapter_types, split_type, takes_imatrix  # noqa: F401  (adapter_types: re-exported)
from edge_runtime.layout import ADAPTER_GGUF, base_gguf, model_gguf
from quantize.gguf import convert_lora_to_gguf, convert_to_gguf, quantize_gguf


def _fingerprint(hf_dir: Path) -> str:
    """Identifies a base checkpoint by its path and its files' sizes and times (cheap, no hashing of GBs)."""
    hf_dir = Path(hf_dir).resolve()
    h = hashlib.sha256(str(hf_dir).encode())
    for f in sorted(hf_dir.iterdir()):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def base_f16(hf_dir: Path, fallback_dir: Path) -> Path:
    """The base checkpoint as an F16 GGUF. A base the toolkit resolved into its cache (a preset such
    as gemma-3-270m) is converted once and cached beside it; any other base is converted into
    `fallback_dir` (the run's quantize folder), so no hidden cache grows with user models."""
    from edge_runtime.cache import cache_dir

    hf_dir = Path(hf_dir)
    root = cache_dir().resolve()
    if hf_dir.resolve().is_relative_to(root):
        out = root / "gguf" / f"{hf_dir.name}-{_fingerprint(hf_dir)}" / model_gguf("f16")
    else:
        out = Path(fallback_dir) / base_gguf("f16")
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_to_gguf(hf_dir, out, "f16", overwrite=True)
    return out


def base_model_dir(adapter_dir: Path) -> Path:
    """The HF folder a PEFT adapter was trained on, from its adapter_config.json."""
    import json

    cfg_path = Path(adapter_dir) / "adapter_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json: `+lora` types need a LoRA student "
                                "(student.method lora or qlora); use a plain type such as q4_k_m for a full fine-tune")
    base = Path(json.loads(cfg_path.read_text())["base_model_name_or_path"])
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"the adapter's base model {base} is not a local HF folder; "
                                "resolve the student model first (`distill train` caches it)")
    return base


def build_adapter_artifacts(adapter_dir: Path, out_dir: Path, qtypes: list[str], imatrix: Path | None = None,
                            embedding_type: str | None = None, overwrite: bool = True) -> dict[str, tuple[Path, Path]]:
    """For each `<type>+lora`: (quantized base, F16 adapter) under out_dir. The adapter GGUF is shared."""
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base_dir = base_model_dir(adapter_dir)
    adapter = convert_lora_to_gguf(adapter_dir, base_dir, out_dir / ADAPTER_GGUF, "f16", overwrite=overwrite)
    f16 = base_f16(base_dir, out_dir)
    out: dict[str, tuple[Path, Path]] = {}
    for qtype in qtypes:
        base_type, is_adapter = split_type(qtype)
        if not is_adapter:
            continue
        if base_type == "f16":
            local = out_dir / base_gguf("f16")  # every artifact under out_dir by one naming rule
            if local != f16:
                local.unlink(missing_ok=True)
                try:
                    os.link(f16, local)
                except OSError:
                    shutil.copyfile(f16, local)
            out[qtype] = (local, adapter)
            continue
        use = imatrix if takes_imatrix(base_type) else None
        path = quantize_gguf(f16, out_dir / base_gguf(base_type), base_type, imatrix=use, overwrite=overwrite,
                             embedding_type=embedding_type)
        out[qtype] = (path, adapter)
    return out
