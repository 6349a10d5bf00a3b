"""Will this GGUF run on that device? Weights + KV cache + compute buffers + runtime
overhead against the profile's memory budget, with the largest context and slot count
that fit. The GGUF header is read directly (the format is simple; no gguf-py on a router).

The estimate models resident memory, the thing that runs a device out of RAM: llama.cpp
reserves a compute buffer of n_ubatch x n_vocab floats for logits but, without
`logits_all`, touches only the rows it computes, so only the touched part is counted.
Checked against the measured RSS of llama-cpp-python (tests/edge_runtime/test_fit.py).
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from edge_runtime.layout import N_CTX, PARALLEL
from edge_runtime.profiles import Profile

MIB = 1024**2
RUNTIME_BYTES = 48 * MIB  # Python + llama-cpp-python + ggml, measured on import
VOCAB_BYTES_PER_TOKEN = 192  # token text, scores and caches held per loaded vocabulary
N_UBATCH = 512

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _read(fh: BinaryIO, fmt: str):
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("unexpected end of file in the GGUF header")
    return struct.unpack(fmt, data)[0]


def _string(fh: BinaryIO) -> str:
    n = _read(fh, "<Q")
    return fh.read(n).decode("utf-8", errors="replace")


def _value(fh: BinaryIO, vtype: int, keep: bool = True) -> Any:
    if vtype in _SCALARS:
        return _read(fh, _SCALARS[vtype])
    if vtype == 8:
        return _string(fh)
    if vtype == 9:
        itype, n = _read(fh, "<I"), _read(fh, "<Q")
        if itype in _SCALARS:
            size = struct.calcsize(_SCALARS[itype])
            raw = fh.read(size * n)
            return list(struct.iter_unpack(_SCALARS[itype], raw))[:16] + [n] if keep else n
        for _ in range(n):
            _value(fh, itype, keep=False)
        return n  # arrays (the vocabulary) are only counted
    raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Key/value metadata of a GGUF (arrays are reduced to their length)."""
    path = Path(path)
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file (bad magic)")
        version = _read(fh, "<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        n_tensors, n_kv = _read(fh, "<Q"), _read(fh, "<Q")
        meta: dict[str, Any] = {"gguf.version": version, "gguf.tensor_count": n_tensors}
        for _ in range(n_kv):
            key = _string(fh)
            vtype = _read(fh, "<I")
            value = _value(fh, vtype)
            meta[key] = value[-1] if vtype == 9 and isinstance(value, list) else value
    return meta


@dataclass
class ModelShape:
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    key_length: int
    value_length: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    file_bytes: int

    @classmethod
    def from_gguf(cls, path: str | Path) -> "ModelShape":
        meta = read_gguf_metadata(path)
        arch = meta.get("general.architecture")
        if not arch:
            raise ValueError(f"{path}: no general.architecture in the GGUF metadata")

        def get(key: str, default: Any = None):
            value = meta.get(f"{arch}.{key}", default)
            if value is None:
                raise ValueError(f"{path}: GGUF metadata lacks {arch}.{key}")
            return value[0] if isinstance(value, list) else value

        n_embd, n_head = int(get("embedding_length")), int(get("attention.head_count"))
        head_dim = n_embd // n_head
        ff = get("feed_forward_length", 4 * n_embd)
        return cls(
            arch=arch, n_layer=int(get("block_count")), n_embd=n_embd, n_head=n_head,
            n_head_kv=int(get("attention.head_count_kv", n_head)),
            key_length=int(get("attention.key_length", head_dim)),
            value_length=int(get("attention.value_length", head_dim)),
            n_ff=int(ff), n_vocab=int(meta.get("tokenizer.ggml.tokens", 0) or get("vocab_size", 32000)),
            n_ctx_train=int(get("context_length", 4096)), file_bytes=Path(path).stat().st_size,
        )


@dataclass
class FitResult:
    model: str
    profile: str
    n_ctx: int
    parallel: int
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    overhead_bytes: int
    total_bytes: int
    budget_bytes: int
    fits: bool
    max_ctx: int  # the largest context (multiple of 256) that fits with `parallel` slots
    max_parallel: int  # the most slots that fit at `n_ctx`
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        mib = lambda b: f"{b / MIB:,.0f} MiB"  # noqa: E731
        verdict = "YES, it fits" if self.fits else "NO, it does not fit"
        lines = [
            f"{verdict} on {self.profile}: {mib(self.total_bytes)} of a {mib(self.budget_bytes)} budget "
            f"(ctx {self.n_ctx}, {self.parallel} slot(s))",
            f"  weights {mib(self.weights_bytes)}, KV cache {mib(self.kv_bytes)}, compute {mib(self.compute_bytes)}, "
            f"runtime {mib(self.overhead_bytes)}",
            f"  largest context with {self.parallel} slot(s): {self.max_ctx}; most slots at ctx {self.n_ctx}: {self.max_parallel}",
        ]
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def kv_bytes(shape: ModelShape, n_ctx: int, parallel: int = 1, bytes_per_element: int = 2) -> int:
    """layers x KV heads x (key + value head dim) x context x bytes per element x slots."""
    return shape.n_layer * shape.n_head_kv * (shape.key_length + shape.value_length) * n_ctx * bytes_per_element * parallel


def compute_bytes(shape: ModelShape, parallel: int = 1) -> int:
    """The touched part of one ubatch's activations plus two logit rows, per slot."""
    return (N_UBATCH * (12 * shape.n_embd + 4 * shape.n_ff) * 4 + 2 * shape.n_vocab * 4) * parallel


def overhead_bytes(shape: ModelShape, parallel: int = 1) -> int:
    return RUNTIME_BYTES + VOCAB_BYTES_PER_TOKEN * shape.n_vocab * parallel


def estimate(shape: ModelShape, n_ctx: int, parallel: int = 1) -> int:
    return shape.file_bytes + kv_bytes(shape, n_ctx, parallel) + compute_bytes(shape, parallel) + overhead_bytes(shape, parallel)


def fit(model: str | Path, profile: Profile, n_ctx: int = N_CTX, parallel: int = PARALLEL,
        extra_weights_bytes: int = 0) -> FitResult:
    """`extra_weights_bytes`: weights loaded beside the model, e.g. a LoRA adapter GGUF."""
    if n_ctx <= 0 or parallel <= 0:
        raise ValueError("--ctx and --parallel must be positive")
    shape = ModelShape.from_gguf(model)
    if extra_weights_bytes:
        shape.file_bytes += int(extra_weights_bytes)
    budget = profile.budget_bytes
    total = estimate(shape, n_ctx, parallel)
    notes = []
    if n_ctx > shape.n_ctx_train:
        notes.append(f"ctx {n_ctx} exceeds the model's training context {shape.n_ctx_train}")
    if "llamacpp" not in profile.engines:
        notes.append(f"profile {profile.name} does not list llama.cpp among its engines")
    max_ctx = 0
    per_token = kv_bytes(shape, 1, parallel)
    room = budget - estimate(shape, 0, parallel)
    if room > 0:
        max_ctx = min(shape.n_ctx_train, int(room // per_token) // 256 * 256)
    max_par = 0
    while max_par < 4096 and estimate(shape, n_ctx, max_par + 1) <= budget:
        max_par += 1
    return FitResult(
        model=str(model), profile=profile.name, n_ctx=n_ctx, parallel=parallel,
        weights_bytes=shape.file_bytes, kv_bytes=kv_bytes(shape, n_ctx, parallel),
        compute_bytes=compute_bytes(shape, parallel), overhead_bytes=overhead_bytes(shape, parallel),
        total_bytes=total, budget_bytes=budget, fits=total <= budget and n_ctx <= shape.n_ctx_train,
        max_ctx=max_ctx, max_parallel=max_par, notes=notes,
    )
