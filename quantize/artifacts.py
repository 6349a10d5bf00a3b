"""One routine for GGUF artifacts: convert the merged student to F16, compute the importance
matrix, quantize to each plain type, and build the `<type>+lora` pairs (quantized base + F16
adapter). The pipeline's quantize stage, `quantize sweep` and `quantize gguf` all call it, so
the file names (edge_runtime.layout's) and the rule for which types get the importance matrix
(edge_runtime.gguf_types' table) are applied in one place.

Files, all in `out_dir`: model-f16.gguf, imatrix.gguf, model-<q>.gguf, base-<q>.gguf and
adapter-f16.gguf (`<name>-` instead of `model-` for another `name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

from edge_runtime.gguf_types import split_type, takes_imatrix
from edge_runtime.layout import MODEL_NAME, imatrix_gguf, model_gguf
from quantize.gguf import convert_to_gguf, quantize_gguf, status

# what to do with an output file that exists: make it again (the pipeline), keep it (the sweep),
# or stop with an error that names --overwrite (`quantize gguf`, which still reuses the F16 source)
Existing = Literal["rebuild", "reuse", "refuse"]


@dataclass(frozen=True)
class BuildSettings:
    """What to build; the defaults are a pipeline run's."""

    types: tuple[str, ...] | list[str]
    imatrix_texts: Callable[[], list[str]] | None = None  # prompts to compute the importance matrix on
    imatrix: Path | None = None  # or an importance matrix file made before
    embedding_type: str | None = None  # token embedding / output tensor type (quantize_gguf says why)
    existing: Existing = "rebuild"
    name: str = MODEL_NAME  # file name prefix
    outtype: str = "f16"  # what the converter writes: the source of every quantized type
    check: bool = True  # verify the converted GGUF's tokenizer against the HF one


def build_gguf_artifacts(merged_dir: Path, out_dir: Path, settings: BuildSettings,
                         adapter_dir: Path | None = None) -> dict[str, tuple[Path, Path | None]]:
    """{type: (model file, adapter file or None)} for the converted type (f16) and every type in
    `settings.types`, in this order: f16, the plain types, then the `+lora` types (each in the
    given order). The importance matrix, when there is one, is used for the types the table marks."""
    merged_dir, out_dir, s = Path(merged_dir), Path(out_dir), settings
    source = out_dir / model_gguf(s.outtype, s.name)
    if s.existing == "refuse" and source.exists() and any(t != s.outtype for t in s.types):
        status(f"reusing {source}")  # the source of what was asked for, not itself an output
    elif s.existing != "reuse" or not source.exists():
        convert_to_gguf(merged_dir, source, s.outtype, overwrite=s.existing == "rebuild", check=s.check)
    imatrix = s.imatrix
    if s.imatrix_texts is not None and any(takes_imatrix(t) for t in s.types):  # none of q8_0, f16 reads one
        imatrix = out_dir / imatrix_gguf(s.name)
        if s.existing != "reuse" or not imatrix.exists():
            from quantize.imatrix import compute_imatrix

            imatrix = compute_imatrix(source, s.imatrix_texts(), imatrix, overwrite=s.existing == "rebuild")
    out: dict[str, tuple[Path, Path | None]] = {s.outtype: (source, None)}
    for qtype in s.types:
        if qtype == s.outtype or split_type(qtype)[1]:
            continue
        path = out_dir / model_gguf(qtype, s.name)
        if s.existing != "reuse" or not path.exists():
            quantize_gguf(source, path, qtype, imatrix=imatrix if takes_imatrix(qtype) else None,
                          overwrite=s.existing == "rebuild", embedding_type=s.embedding_type)
        out[qtype] = (path, None)
    if any(split_type(t)[1] for t in s.types):  # quantized base + F16 adapter (quantize/adapter.py says why)
        from quantize.adapter import build_adapter_artifacts

        if adapter_dir is None:
            raise ValueError("`+lora` types need the LoRA adapter folder (adapter_dir)")
        out.update(build_adapter_artifacts(Path(adapter_dir), out_dir, list(s.types), imatrix=imatrix,
                                           overwrite=s.existing == "rebuild", embedding_type=s.embedding_type))
    return out
