"""Will this GGUF run on that device? Weights + KV cache + compute buffers + runtime
overhead against the profile's memory budget, with the largest context and slot count
that fit. The GGUF header is read directly (the format is simple; no gguf-py on a router).

The estimate models resident memory, the thing that runs a device out of RAM: llama.cpp
reserves a compute buffer of n_ubatch x n_vocab floats for logits but, without
`logits_all`, touches only the rows it computes, so only the touched part is counted.
Checked against the measured RSS of llama-cpp-python (tests/edge_runtime/test_fit.py).

On a GPU profile that offloads (`gpu_layers`), the offloaded layers' share of the weights and
KV cache and the compute buffers are GPU memory, checked against the profile's budget; the
rest and the runtime are host memory, checked against `host_memory_gb` when the profile has it.
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
    gpu_layers: int = 0  # layers offloaded (of the model's n_layer); 0: everything is host memory
    gpu_bytes: int = 0  # of total_bytes, on the GPU
    host_bytes: int | None = None  # on the host (all of total_bytes without offload)
    host_budget_bytes: int | None = None  # the profile's host memory budget, if it says

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        mib = lambda b: f"{b / MIB:,.0f} MiB"  # noqa: E731
        verdict = "YES, it fits" if self.fits else "NO, it does not fit"
        where = f"GPU ({self.gpu_layers} layers offloaded) " if self.gpu_layers else ""
        lines = [
            f"{verdict} on {self.profile}: {where}{mib(self.total_bytes)} of a {mib(self.budget_bytes)} budget "
            f"(ctx {self.n_ctx}, {self.parallel} slot(s))",
            f"  weights {mib(self.weights_bytes)}, KV cache {mib(self.kv_bytes)}, compute {mib(self.compute_bytes)}, "
            f"runtime {mib(self.overhead_bytes)}",
            f"  largest context with {self.parallel} slot(s): {self.max_ctx}; most slots at ctx {self.n_ctx}: {self.max_parallel}",
        ]
        if self.gpu_layers:
            budget = f" of a {mib(self.host_budget_bytes)} budget" if self.host_budget_bytes is not None else ""
            lines.insert(1, f"  host memory: {mib(self.host_bytes or 0)}{budget} (runtime and what stays on the CPU)")
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


def offloaded_layers(profile: Profile, n_layer: int, gpu_layers: int | None = None) -> int:
    """Layers on the GPU: the profile's `gpu_layers` (or the override), none on a CPU profile."""
    wanted = profile.gpu_layers if gpu_layers is None else gpu_layers
    if profile.accelerator == "cpu" or wanted == 0:
        return 0
    return n_layer if wanted < 0 else min(wanted, n_layer)


def split(shape: ModelShape, n_ctx: int, parallel: int, on_gpu: int) -> tuple[int, int]:
    """(GPU bytes, host bytes) with `on_gpu` of the model's layers offloaded."""
    if on_gpu <= 0:
        return 0, estimate(shape, n_ctx, parallel)
    frac = on_gpu / max(shape.n_layer, 1)
    weights, kv = shape.file_bytes, kv_bytes(shape, n_ctx, parallel)
    gpu = int(weights * frac + kv * frac) + compute_bytes(shape, parallel)
    host = int(weights * (1 - frac) + kv * (1 - frac)) + overhead_bytes(shape, parallel)
    if on_gpu < shape.n_layer:  # the CPU computes its layers too
        host += compute_bytes(shape, parallel)
    return gpu, host


def fit(model: str | Path, profile: Profile, n_ctx: int = N_CTX, parallel: int = PARALLEL,
        extra_weights_bytes: int = 0, gpu_layers: int | None = None) -> FitResult:
    """`extra_weights_bytes`: weights loaded beside the model, e.g. a LoRA adapter GGUF;
    `gpu_layers`: overrides the profile's offload (-1 all)."""
    if n_ctx <= 0 or parallel <= 0:
        raise ValueError("--ctx and --parallel must be positive")
    shape = ModelShape.from_gguf(model)
    if extra_weights_bytes:
        shape.file_bytes += int(extra_weights_bytes)
    on_gpu = offloaded_layers(profile, shape.n_layer, gpu_layers)
    budget, host_budget = profile.budget_bytes, profile.host_budget_bytes if on_gpu else None

    def usage(ctx: int, par: int) -> tuple[int, int | None]:
        """(bytes against the profile's budget, host bytes when they are counted apart)."""
        gpu, host = split(shape, ctx, par, on_gpu)
        return (gpu, host) if on_gpu else (host, None)

    def ok(ctx: int, par: int) -> bool:
        main, host = usage(ctx, par)
        return main <= budget and (host_budget is None or host is None or host <= host_budget)

    total, host_total = usage(n_ctx, parallel)
    gpu_total = total if on_gpu else 0
    notes = []
    if n_ctx > shape.n_ctx_train:
        notes.append(f"ctx {n_ctx} exceeds the model's training context {shape.n_ctx_train}")
    if "llamacpp" not in profile.engines:
        notes.append(f"profile {profile.name} does not list llama.cpp among its engines")
    if on_gpu and profile.host_memory_gb is None:
        notes.append(f"profile {profile.name} has no host_memory_gb: host memory ({(host_total or 0) / MIB:,.0f} MiB) "
                     "is not checked")
    lo, hi = 0, shape.n_ctx_train // 256  # the largest multiple of 256 that fits (usage grows with ctx)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid * 256, parallel) else (lo, mid - 1)
    max_ctx = lo * 256
    max_par = 0
    while max_par < 4096 and ok(n_ctx, max_par + 1):
        max_par += 1
    return FitResult(
        model=str(model), profile=profile.name, n_ctx=n_ctx, parallel=parallel,
        weights_bytes=shape.file_bytes, kv_bytes=kv_bytes(shape, n_ctx, parallel),
        compute_bytes=compute_bytes(shape, parallel), overhead_bytes=overhead_bytes(shape, parallel),
        total_bytes=total, budget_bytes=budget, fits=ok(n_ctx, parallel) and n_ctx <= shape.n_ctx_train,
        max_ctx=max_ctx, max_parallel=max_par, notes=notes, gpu_layers=on_gpu, gpu_bytes=gpu_total,
        host_bytes=host_total if on_gpu else total, host_budget_bytes=host_budget,
    )
