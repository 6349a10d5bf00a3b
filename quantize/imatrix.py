"""An importance matrix from the task's own training prompts, for the 4-bit types.

llama-cpp-python ships no `llama-imatrix` tool, but it exposes what that tool is built on:
the scheduler's eval callback (`cb_eval`) and the quantizer's `imatrix` parameter. So the
same statistic is collected here: for every matrix multiplication with a `blk.*` weight,
the sum of squared input activations per input column and the number of rows seen. The
file is written in llama.cpp's imatrix GGUF format (`<tensor>.in_sum2`, `<tensor>.counts`),
so `llama-quantize --imatrix` reads it too.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from edge_runtime.engines.llamacpp import quiet_llama_logs

GGML_MAX_DIMS, GGML_MAX_SRC, GGML_MAX_OP_PARAMS, GGML_MAX_NAME = 4, 10, 64, 64
GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` of ggml.h (the vendored version of the installed llama-cpp-python)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


def _ggml():
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    lib.ggml_op_name.restype, lib.ggml_op_name.argtypes = ctypes.c_char_p, [ctypes.c_int]
    lib.ggml_backend_buffer_is_host.restype, lib.ggml_backend_buffer_is_host.argtypes = ctypes.c_bool, [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.ggml_nbytes.restype, lib.ggml_nbytes.argtypes = ctypes.c_size_t, [ctypes.c_void_p]
    lib.ggml_tensor_overhead.restype = ctypes.c_size_t
    return lib


def _weight_name(raw: bytes) -> str:
    name = raw.decode("utf-8", "replace")
    if "#" in name:  # llama.cpp's view/copy names look like "x#blk.0.attn_q.weight#0"
        name = name.split("#")[1]
    return name


def compute_imatrix(model_gguf: Path, texts: list[str], out: Path, n_ctx: int = 1024,
                    overwrite: bool = False) -> Path:
    """Run `texts` through the F16 GGUF and write llama.cpp's imatrix GGUF to `out`."""
    import gguf
    import llama_cpp
    from llama_cpp import _internals as internals
    from llama_cpp import Llama

    from quantize.gguf import atomic_output
    from quantize.progress import bar

    if not texts:
        raise ValueError("the importance matrix needs at least one training prompt")
    lib = _ggml()
    if ctypes.sizeof(GgmlTensor) != lib.ggml_tensor_overhead() - _object_overhead(lib):
        raise RuntimeError("this llama-cpp-python's ggml_tensor layout differs from the one this module knows; "
                           "quantize without --imatrix")
    mul_mat = next(i for i in range(200) if lib.ggml_op_name(i) == b"MUL_MAT")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}

    def collect(t_ptr, ask, _user):
        t = GgmlTensor.from_address(t_ptr)
        if t.op != mul_mat or not t.src[0] or not t.src[1]:
            return False if ask else True
        w, x = GgmlTensor.from_address(t.src[0]), GgmlTensor.from_address(t.src[1])
        name = _weight_name(w.name)
        if ask:
            return name.startswith("blk.") and x.type == GGML_TYPE_F32 and w.ne[2] * w.ne[3] == 1
        nbytes = lib.ggml_nbytes(t.src[1])
        buf = (ctypes.c_char * nbytes)()
        if x.buffer and lib.ggml_backend_buffer_is_host(x.buffer):
            ctypes.memmove(buf, x.data, nbytes)
        else:
            lib.ggml_backend_tensor_get(t.src[1], buf, 0, nbytes)
        shape = tuple(x.ne[i] for i in reversed(range(4)))
        strides = tuple(x.nb[i] for i in reversed(range(4)))
        act = np.lib.stride_tricks.as_strided(np.frombuffer(buf, dtype=np.float32), shape, strides).reshape(-1, x.ne[0])
        sq = np.square(act.astype(np.float64)).sum(0)
        sums[name] = sums.get(name, 0) + sq
        counts[name] = counts.get(name, 0) + act.shape[0]
        return True

    callback = llama_cpp.ggml_backend_sched_eval_callback(collect)
    quiet_llama_logs()
    llm = Llama(model_path=str(model_gguf), n_ctx=64, vocab_only=False, verbose=False)
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
    params.cb_eval = callback
    params.cb_eval_user_data = None
    ctx = internals.LlamaContext(model=llm._model, params=params, verbose=False)
    batch = internals.LlamaBatch(n_tokens=n_ctx, embd=0, n_seq_max=1, verbose=False)
    n_tokens = 0
    try:
        with bar("importance matrix", len(texts)) as advance:
            for text in texts:
                ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)[:n_ctx]
                llama_cpp.llama_memory_clear(ctx.memory, True)
                batch.set_batch(ids, n_past=0, logits_all=False)
                ctx.decode(batch)
                n_tokens += len(ids)
                advance()
    finally:
        batch.close()
        ctx.close()
        llm.close()
    if not sums:
        raise RuntimeError("no matrix multiplication was observed; the model's graph is not what the imatrix expects")
    writer_size = sum(v.size * 4 + 8 for v in sums.values())
    with atomic_output(Path(out), overwrite, writer_size + 1024 * 1024) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch="imatrix")  # general.architecture is ignored by the loader
        w.add_type("imatrix")
        w.add_array(gguf.Keys.IMatrix.DATASETS, ["task training prompts"])
        w.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, len(texts))
        w.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, n_ctx)
        for name in sorted(sums):
            w.add_tensor(f"{name}.in_sum2", sums[name].astype(np.float32).reshape(1, -1))
            w.add_tensor(f"{name}.counts", np.array([[counts[name]]], dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return Path(out)


def _object_overhead(lib) -> int:
    """ggml_tensor_overhead() = sizeof(ggml_object) + sizeof(ggml_tensor); ggml_object is 32 bytes on 64-bit."""
    return 32


def read_imatrix(path: Path) -> dict[str, np.ndarray]:
    """Per-weight mean squared activation (sum / count), as llama-quantize computes it."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    sums, counts = {}, {}
    for t in reader.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.array(t.data, dtype=np.float32).reshape(-1)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = float(np.array(t.data).reshape(-1)[0])
    if not sums or set(sums) != set(counts):
        raise ValueError(f"{path} is not an importance matrix GGUF (needs <tensor>.in_sum2 and <tensor>.counts)")
    return {k: (sums[k] / counts[k] if counts[k] > 0 else np.ones_like(sums[k])) for k in sums}


def imatrix_param(path: Path):
    """(pointer for llama_model_quantize_params.imatrix, objects to keep alive until quantizing ends)."""
    import llama_cpp

    data = read_imatrix(path)
    entries = (llama_cpp.llama_model_imatrix_data * (len(data) + 1))()
    keep: list = [entries]
    for i, (name, values) in enumerate(sorted(data.items())):
        arr = np.ascontiguousarray(values, dtype=np.float32)
        cname = ctypes.c_char_p(name.encode())
        keep += [arr, cname]
        entries[i].name = cname.value
        entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = arr.size
    entries[len(data)].name = None  # terminator
    return ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data)), keep
