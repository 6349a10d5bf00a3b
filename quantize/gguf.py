"""HF checkpoint -> GGUF (llama.cpp's own converter) -> quantized GGUF types, and LoRA adapters.

Every writer goes through `atomic_output`: it refuses an existing output unless asked,
checks the disk has room, writes under a temporary name next to the output and renames
only on success, so an interrupted or failed run never leaves a half-written file under
the final name.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from contextlib import contextmanager
from math import prod
from pathlib import Path
from typing import Iterator

from edge_runtime.gguf_types import EMBEDDING_TYPES, TYPES
from quantize.compat import llamacpp_mismatches
from quantize.llamacpp_src import converter_env, llamacpp_dir, supported_architectures

# name -> (llama_ftype constant in llama_cpp, approximate bits per weight, note): a view of the one
# table in edge_runtime/gguf_types.py, which the recipe validates against too
QTYPES: dict[str, tuple[str, float, str]] = {t.name: (t.ftype, t.bits, t.note) for t in TYPES}
CONVERT_TYPES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 1.07}
MB = 1024 * 1024


class OutputExists(FileExistsError):
    """The output path exists and overwrite was not asked for."""


class DiskTooSmall(OSError):
    """The output's disk has less free space than the output needs."""


class UnsupportedArchitecture(ValueError):
    """llama.cpp's converter has no class for this model (or would run it differently)."""


class ConversionFailed(RuntimeError):
    """The converter or quantizer failed; the message carries the tail of its log."""


def check_output(out: Path, overwrite: bool, need_bytes: int) -> None:
    """Before writing any output (file or folder): refuse an existing one unless asked, and a disk too small."""
    if out.exists() and not overwrite:
        raise OutputExists(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    if free < need_bytes:
        raise DiskTooSmall(
            f"{out.parent} has {free / MB:.0f} MiB free but the output needs about {need_bytes / MB:.0f} MiB; "
            f"free space or choose another --out"
        )


@contextmanager
def atomic_output(out: Path, overwrite: bool, need_bytes: int) -> Iterator[Path]:
    """A temporary file next to `out`, renamed to `out` only when the body wrote it (see the module docstring)."""
    out = Path(out)
    check_output(out, overwrite, need_bytes)
    tmp = out.with_name(out.name + ".partial")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        if not tmp.is_file():
            raise ConversionFailed(f"no output was written for {out}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(out: Path, overwrite: bool, need_bytes: int = 0) -> Iterator[Path]:
    """A temporary folder next to `out`, renamed to `out` only when the body succeeds."""
    out = Path(out)
    check_output(out, overwrite, need_bytes)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def n_weights(hf_dir: Path) -> int:
    """Parameter count from safetensors headers (no tensor is read); file sizes otherwise."""
    total = 0
    files = sorted(hf_dir.glob("*.safetensors"))
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        total += sum(prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    if not files:
        total = sum(f.stat().st_size for f in hf_dir.glob("*.bin")) // 2
    return total


def read_hf_config(hf_dir: Path) -> dict:
    hf_dir = Path(hf_dir)
    cfg = hf_dir / "config.json"
    if not hf_dir.is_dir() or not cfg.is_file():
        raise FileNotFoundError(
            f"{hf_dir} is not a Hugging Face model folder (no config.json); give the merged student "
            f"(runs/<recipe>/train/merged), not a LoRA adapter folder"
        )
    return json.loads(cfg.read_text(encoding="utf-8"))


def check_convertible(hf_dir: Path) -> dict:
    """Refuse early what llama.cpp cannot convert or would run differently; returns the config."""
    config = read_hf_config(hf_dir)
    archs = config.get("architectures") or []
    supported = supported_architectures(llamacpp_dir())
    if not any(a in supported for a in archs):
        raise UnsupportedArchitecture(
            f"{hf_dir}: architecture {archs or '(none in config.json)'} is not supported by llama.cpp's converter "
            f"(llama-cpp-python's version). Supported: {', '.join(supported)}"
        )
    problems = llamacpp_mismatches(config)
    if problems:
        raise UnsupportedArchitecture(f"{hf_dir} would run differently in llama.cpp: " + "; ".join(problems))
    return config


def _run_converter(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, env=converter_env(llamacpp_dir()), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        hint = ""
        if "No module named" in tail:
            hint = "\n(the converter needs torch, transformers, sentencepiece and protobuf: pip install 'edge-distill[full]')"
        raise ConversionFailed(f"{what} failed (exit {proc.returncode}):\n{tail}{hint}")


def status(msg: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[dim]{msg}[/dim]")


def convert_to_gguf(hf_dir: Path, out_path: Path, outtype: str = "f16", overwrite: bool = False,
                    check: bool = True) -> Path:
    """Convert a (merged) HF checkpoint to one GGUF with llama.cpp's converter; with `check`,
    the GGUF's tokenizer, special tokens and chat template are verified against the HF
    tokenizer before the file gets its final name."""
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if outtype not in CONVERT_TYPES:
        raise ValueError(f"outtype {outtype!r} is not one of {sorted(CONVERT_TYPES)}; quantize further with quantize_gguf")
    check_convertible(hf_dir)
    need = int(n_weights(hf_dir) * CONVERT_TYPES[outtype]) + 64 * MB
    src = llamacpp_dir()
    start = time.perf_counter()
    with atomic_output(out_path, overwrite, need) as tmp:
        status(f"converting {hf_dir} to {outtype.upper()} GGUF with llama.cpp's convert_hf_to_gguf.py ...")
        _run_converter([sys.executable, str(src / "convert_hf_to_gguf.py"), str(hf_dir),
                        "--outfile", str(tmp), "--outtype", outtype], f"converting {hf_dir}")
        if check:
            from quantize.check import check_metadata

            problems = check_metadata(tmp, hf_dir)
            if problems:
                raise ConversionFailed(f"{hf_dir} -> GGUF does not match its HF tokenizer: " + "; ".join(problems))
    status(f"wrote {out_path} ({out_path.stat().st_size / MB:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    return out_path




def quantize_gguf(src: Path, dst: Path, qtype: str, imatrix: Path | None = None, overwrite: bool = False,
                  n_threads: int = 0, embedding_type: str | None = None) -> Path:
    """Quantize an F16/BF16/F32 GGUF to `qtype` with llama.cpp's quantizer (in process).
    `imatrix` is an importance matrix file from `quantize.imatrix.compute_imatrix`.
    `embedding_type` overrides the token embedding and output tensors' type: in small models
    with a large tied vocabulary (Gemma 3 270M: 168M of 268M weights) they set the file size,
    and llama.cpp keeps them at Q8_0 when their rows are not a multiple of 256."""
    import llama_cpp

    src, dst = Path(src), Path(dst)
    qtype = qtype.lower()
    if qtype not in QTYPES:
        raise ValueError(f"unknown quantization type {qtype!r}; choose one of {', '.join(QTYPES)}")
    if not src.is_file():
        raise FileNotFoundError(f"source GGUF not found: {src}; make it with `quantize gguf HF_DIR --types f16`")
    with open(src, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{src} is not a GGUF file")
    if src.resolve() == dst.resolve():
        raise ValueError("source and destination are the same file")
    need = int(src.stat().st_size * QTYPES[qtype][1] / 16 * 1.2) + 16 * MB
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QTYPES[qtype][0])
    params.nthread = n_threads
    if embedding_type is not None:
        if embedding_type not in EMBEDDING_TYPES:
            raise ValueError(f"embedding_type {embedding_type!r} is not one of {', '.join(EMBEDDING_TYPES)}")
        ggml_type = getattr(llama_cpp, f"GGML_TYPE_{embedding_type.upper()}")
        params.token_embedding_type = params.output_tensor_type = ggml_type
        need = int(src.stat().st_size * 0.6) + 16 * MB
    keep = None
    if imatrix is not None:
        from quantize.imatrix import imatrix_param

        keep = imatrix_param(Path(imatrix))
        params.imatrix = keep[0]
    elif qtype in ("iq4_xs",):
        status(f"{qtype} without an importance matrix: expect more loss than with --imatrix")
    start = time.perf_counter()
    with atomic_output(dst, overwrite, need) as tmp:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
        if rc != 0:
            raise ConversionFailed(f"llama.cpp could not quantize {src} to {qtype} (code {rc}); is it an F16/BF16/F32 GGUF?")
    del keep
    status(f"wrote {dst} ({dst.stat().st_size / MB:.1f} MiB, {qtype}) in {time.perf_counter() - start:.1f} s")
    return dst


def convert_lora_to_gguf(adapter_dir: Path, base_dir: Path, out_path: Path, outtype: str = "f16",
                         overwrite: bool = False) -> Path:
    """A PEFT LoRA adapter as a GGUF adapter (llama.cpp `lora_path`), so a device keeps one base
    model and loads several task adapters."""
    adapter_dir, base_dir, out_path = Path(adapter_dir), Path(base_dir), Path(out_path)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json: give a PEFT LoRA adapter folder")
    if outtype not in ("f32", "f16", "bf16", "q8_0"):
        raise ValueError(f"outtype {outtype!r} is not one of f32, f16, bf16, q8_0")
    check_convertible(base_dir)
    weights = sum(f.stat().st_size for f in adapter_dir.glob("adapter_model.*"))
    src = llamacpp_dir()
    with atomic_output(out_path, overwrite, weights + 16 * MB) as tmp:
        _run_converter([sys.executable, str(src / "convert_lora_to_gguf.py"), str(adapter_dir),
                        "--base", str(base_dir), "--outfile", str(tmp), "--outtype", outtype],
                       f"converting LoRA adapter {adapter_dir}")
    status(f"wrote {out_path} ({out_path.stat().st_size / MB:.1f} MiB LoRA adapter)")
    return out_path
