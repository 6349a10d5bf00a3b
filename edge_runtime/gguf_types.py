"""The GGUF quantization types as one table: what the recipe accepts, what `quantize` makes and
which types take an importance matrix; and the one parser of the `<type>+lora` suffix.

Pure data (no llama_cpp import), so the recipe, the quantize package and the runtime read the
same rules.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QType:
    name: str
    ftype: str  # the llama_ftype constant in llama_cpp
    bits: float  # approximate bits per weight
    imatrix: bool  # quantized with the importance matrix when a recipe computes one (`quantize.imatrix`)
    adapter: bool  # has a `<name>+lora` form: the base quantized alone, the LoRA kept as an F16 adapter
    note: str


# imatrix: the low-bit types, where spending precision on the weights that matter pays
TYPES: tuple[QType, ...] = (
    QType("f16", "LLAMA_FTYPE_MOSTLY_F16", 16.0, False, True, "reference; what the answer check compares against"),
    QType("bf16", "LLAMA_FTYPE_MOSTLY_BF16", 16.0, False, False, "16-bit with float32's range"),
    QType("q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", 8.5, False, True, "near-lossless, half of F16"),
    QType("q6_k", "LLAMA_FTYPE_MOSTLY_Q6_K", 6.56, False, True, "very close to F16"),
    QType("q5_k_m", "LLAMA_FTYPE_MOSTLY_Q5_K_M", 5.7, True, True, "small loss"),
    QType("q4_k_m", "LLAMA_FTYPE_MOSTLY_Q4_K_M", 4.85, True, True, "the usual device default"),
    QType("q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", 4.5, True, True, "simplest 4-bit; fast on ARM"),
    QType("iq4_xs", "LLAMA_FTYPE_MOSTLY_IQ4_XS", 4.25, True, True, "4-bit non-linear; best with an importance matrix"),
)
BY_NAME: dict[str, QType] = {t.name: t for t in TYPES}
FULL_PRECISION = ("f16", "bf16")  # not quantized: made by the converter itself
# the token embedding / output tensor types `quantize.embedding_type` may name
EMBEDDING_TYPES = ("q8_0", "q6_k", "q5_0", "q4_0", "iq4_nl")

LORA_SUFFIX = "+lora"


def split_type(qtype: str) -> tuple[str, bool]:
    """`q4_k_m+lora` -> ("q4_k_m", True); `q8_0` -> ("q8_0", False)."""
    if qtype.endswith(LORA_SUFFIX):
        return qtype[: -len(LORA_SUFFIX)], True
    return qtype, False


def adapter_types() -> list[str]:
    """Every `<type>+lora` name."""
    return [f"{t.name}{LORA_SUFFIX}" for t in TYPES if t.adapter]


def takes_imatrix(qtype: str) -> bool:
    """Whether `qtype` (or the base type of `<qtype>+lora`) is quantized with the importance matrix."""
    t = BY_NAME.get(split_type(qtype)[0])
    return bool(t and t.imatrix)


# what `quantize.types` in a recipe accepts, in this order
RECIPE_TYPES: tuple[str, ...] = tuple(t.name for t in TYPES) + tuple(adapter_types())
