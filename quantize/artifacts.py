"""One routine for a run's GGUF artifacts: convert the merged student to F16, compute the
importance matrix, quantize to each plain type, and build the `<type>+lora` pairs (quantized
base + F16 adapter). The pipeline's quantize stage and `quantize sweep` both call it.

File names are edge_runtime.layout's: model-f16.gguf, imatrix.gguf, model-<q>.gguf,
base-<q>.gguf and adapter-f16.gguf, all in `out_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edge_runtime.gguf_types import FULL_PRECISION, split_type, takes_imatrix
from edge_runtime.layout import IMATRIX_GGUF, model_gguf
from quantize.gguf import convert_to_gguf, quantize_gguf


def build_gguf_artifacts(merged_dir: Path, out_dir: Path, types: list[str], *, adapter_dir: Path | None = None,
                         imatrix_texts: Callable[[], list[str]] | None = None, embedding_type: str | None = None,
                         overwrite: bool = True) -> dict[str, tuple[Path, Path | None]]:
    """{type: (model file, adapter file or None)} for "f16" and every type in `types`, in this order:
    f16, the plain types, then the `+lora` types (each in `types`' order). `imatrix_texts`, when
    given, supplies the prompts the importance matrix is computed on (it is used for the types
    the table marks). Without `overwrite`, a file that exists is reused (the `+lora` adapter is
    the exception: its converter refuses an existing output, as before)."""
    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    f16 = out_dir / model_gguf("f16")
    if overwrite or not f16.exists():
        convert_to_gguf(merged_dir, f16, "f16", overwrite=True)
    imatrix = None
    if imatrix_texts is not None:
        imatrix = out_dir / IMATRIX_GGUF
        if overwrite or not imatrix.exists():
            from quantize.imatrix import compute_imatrix

            imatrix = compute_imatrix(f16, imatrix_texts(), imatrix, overwrite=True)
    out: dict[str, tuple[Path, Path | None]] = {"f16": (f16, None)}
    for qtype in types:
        if qtype in FULL_PRECISION or split_type(qtype)[1]:
            continue
        path = out_dir / model_gguf(qtype)
        if overwrite or not path.exists():
            quantize_gguf(f16, path, qtype, imatrix=imatrix if takes_imatrix(qtype) else None, overwrite=True,
                          embedding_type=embedding_type)
        out[qtype] = (path, None)
    if any(split_type(t)[1] for t in types):  # quantized base + F16 adapter (quantize/adapter.py says why)
        from quantize.adapter import build_adapter_artifacts

        pairs = build_adapter_artifacts(Path(adapter_dir), out_dir, types, imatrix=imatrix, overwrite=overwrite,
                                        embedding_type=embedding_type)
        out.update(pairs)
    return out
