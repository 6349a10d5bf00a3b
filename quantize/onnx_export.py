"""Merged HF causal LM -> ONNX with a KV cache, and its INT8 / INT4 quantized variants.

The graph (what `edge_runtime.engines.onnx.OnnxPredictor` runs):

    inputs   input_ids [batch, seq] int64, attention_mask [batch, past+seq] int64,
             position_ids [batch, seq] int64, past_key_values.{i}.key/value [batch, kv_heads, past, head_dim]
    outputs  logits [batch, vocab] (last position only: Gemma's vocabulary has 262,144
             entries, so full-sequence logits on a 400-token prompt would cost 400 MB and
             most of the prefill), present.{i}.key/value [batch, kv_heads, past+seq, head_dim]

Prefill feeds a past of length 0; each decode step feeds the presents back as the past.

How it is exported (what worked with torch 2.13 / transformers 5.24): torch's TorchScript
exporter (`dynamo=False`), opset 18 (ReduceMean's axes as an input, which the INT4
step's bump to opset 21 needs; opset 21 itself is refused by the exporter), eager attention. The wrapper builds the attention masks
itself (causal + padding, and the sliding-window one for Gemma 3's local layers) and hands
them to the model as the precomputed `{layer type: 4D mask}` mapping, so transformers'
mask helpers (which branch on Python values and would be frozen by tracing) never run. The
KV cache is a transformers `DynamicCache` of plain (non-sliding) layers filled with the
past tensors; the sliding window lives in the mask, so cached keys are never dropped and the
past simply grows. The output layer is `F.linear` on a 2-D row, which exports as
`Gemm(transB=1)` reading the embedding initializer itself: a tied embedding is stored once.

Quantization (`quantize_onnx`): INT8 is onnxruntime's dynamic quantization (weights QInt8 per
channel, activations quantized on the fly: MatMulInteger, and the embedding Gather); INT4 is
weight-only MatMulNBits (blocks of 32 with a zero point each: asymmetric, which on the
270M student kept 0.469 field accuracy where symmetric blocks kept 0.000) plus
GatherBlockQuantized for the embedding.
Both need the output layer as a MatMul over a constant [hidden, vocab] matrix, so the Gemm is
rewritten to one first (the embedding and output layer are then quantized separately).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from quantize.gguf import MB, atomic_dir, n_weights, read_hf_config, status

SIDECAR_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "template.json",
                 "special_tokens_map.json", "config.json")
META_FILE = "onnx_meta.json"
MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
EXTERNAL_DATA_BYTES = 1800 * MB  # protobuf's 2 GB limit, with room to spare
QUANT_KINDS = ("int8", "int4")


class ExportFailed(RuntimeError):
    """The exporter or quantizer failed; the message says at which step."""


def _copy_sidecars(src: Path, dst: Path) -> None:
    for name in SIDECAR_FILES + (META_FILE,):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def _eos_ids(hf_dir: Path, config: dict) -> list[int]:
    eos = None
    gen = hf_dir / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text(encoding="utf-8")).get("eos_token_id")
    if eos is None:
        eos = config.get("eos_token_id")
    return [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]


def _wrapper(model, config):
    """An nn.Module with flat tensors in and out around `model` (see the module docstring)."""
    import torch
    import torch.nn.functional as F
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    layer_types = getattr(text, "layer_types", None)
    window = getattr(text, "sliding_window", None)
    n_layers = text.num_hidden_layers
    softcap = getattr(text, "final_logit_softcapping", None)
    body = model.get_decoder() if hasattr(model, "get_decoder") else model.model

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.lm_head = body, model.get_output_embeddings()

        def forward(self, input_ids, attention_mask, position_ids, *past):
            seq, total = input_ids.shape[1], attention_mask.shape[1]
            q = torch.arange(seq, device=input_ids.device) + (total - seq)  # absolute query positions
            k = torch.arange(total, device=input_ids.device)
            allowed = (k[None, :] <= q[:, None])[None, None] & attention_mask[:, None, None, :].bool()
            neg = torch.finfo(torch.float32).min
            full = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, neg)
            if layer_types:
                masks = {"full_attention": full}
                if window and "sliding_attention" in layer_types:
                    near = allowed & ((q[:, None] - k[None, :]) < window)[None, None]
                    masks["sliding_attention"] = torch.zeros(near.shape, dtype=torch.float32).masked_fill(~near, neg)
            else:
                masks = full
            layers = []
            for i in range(n_layers):
                layer = DynamicLayer()
                layer.keys, layer.values = past[2 * i], past[2 * i + 1]
                layer.device, layer.dtype, layer.is_initialized = input_ids.device, past[2 * i].dtype, True
                layers.append(layer)
            cache = DynamicCache()
            cache.layers = layers
            out = self.body(input_ids=input_ids, attention_mask=masks, position_ids=position_ids,
                            cache=cache, use_cache=True)
            hidden = out.last_hidden_state[:, -1, :]  # [batch, hidden]: 2-D, so the head exports as Gemm
            logits = F.linear(hidden, self.lm_head.weight)
            if softcap:
                logits = torch.tanh(logits / softcap) * softcap
            presents = []
            for layer in cache.layers:
                presents += [layer.keys, layer.values]
            return (logits, *presents)

    return Wrapper().eval()


def export_onnx(hf_dir: Path, out_dir: Path, overwrite: bool = False, opset: int = 18) -> Path:
    """Export a merged HF causal LM to `out_dir/model.onnx` (fp32, KV cache), with its
    tokenizer, template.json and `onnx_meta.json` beside it. Returns `out_dir`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    raw = read_hf_config(hf_dir)
    if not (hf_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{hf_dir} has no tokenizer.json: the ONNX runtime engine tokenizes with it")
    start = time.perf_counter()
    with atomic_dir(out_dir, overwrite, 2 * 4 * n_weights(hf_dir) + 64 * MB) as tmp:  # raw export + final
        status(f"exporting {hf_dir} to ONNX (fp32, KV cache) ...")
        config = AutoConfig.from_pretrained(str(hf_dir))
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32,
                                                     attn_implementation="eager").eval()
        text = config.get_text_config(decoder=True)
        n_layers, kv_heads = text.num_hidden_layers, text.num_key_value_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        wrapper = _wrapper(model, config)
        # Trace with a non-empty past and 2 new tokens so no axis is specialised to 0 or 1.
        past_len, seq = 3, 2
        args = (torch.tensor([[2, 100][:seq]]), torch.ones(1, past_len + seq, dtype=torch.int64),
                torch.arange(past_len, past_len + seq)[None])
        past = tuple(torch.zeros(1, kv_heads, past_len, head_dim) for _ in range(2 * n_layers))
        names_in = ["input_ids", "attention_mask", "position_ids"]
        names_out = ["logits"]
        axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "total_sequence"},
                "position_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}}
        for i in range(n_layers):
            for kv in ("key", "value"):
                names_in.append(f"past_key_values.{i}.{kv}")
                names_out.append(f"present.{i}.{kv}")
                axes[names_in[-1]] = {0: "batch", 2: "past_sequence"}
                axes[names_out[-1]] = {0: "batch", 2: "total_sequence"}
        raw_path = tmp / "export" / MODEL_FILE
        raw_path.parent.mkdir()
        try:
            with torch.no_grad():
                torch.onnx.export(wrapper, args + past, str(raw_path), input_names=names_in, output_names=names_out,
                                  dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
        except Exception as exc:
            raise ExportFailed(f"torch.onnx.export failed for {hf_dir} ({raw.get('architectures')}): {exc}") from exc
        del model, wrapper
        graph = _load(raw_path)
        if raw.get("tie_word_embeddings", text.tie_word_embeddings if hasattr(text, "tie_word_embeddings") else False):
            _tie_head(graph)
        _save(graph, tmp / MODEL_FILE)
        shutil.rmtree(raw_path.parent)
        _copy_sidecars(hf_dir, tmp)
        meta = {"num_layers": n_layers, "num_kv_heads": kv_heads, "head_dim": head_dim, "dtype": "float32",
                "eos_token_ids": _eos_ids(hf_dir, raw), "bos_token_id": raw.get("bos_token_id"),
                "vocab_size": text.vocab_size, "logits": "last", "quantization": "fp32",
                "architectures": raw.get("architectures"), "source": str(hf_dir), "opset": opset}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    status(f"wrote {out_dir / MODEL_FILE} ({model_bytes(out_dir) / MB:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    return out_dir


def _load(path: Path):
    import onnx

    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}; export it with `quantize onnx HF_DIR --out DIR`")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ValueError(f"{path} is not a readable ONNX model ({exc}); re-export it with `quantize onnx`") from exc


def _save(model, path: Path) -> None:
    """Save, with the weights in `model.onnx.data` beside it when protobuf's 2 GB limit needs it."""
    import onnx

    big = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES
    onnx.save_model(model, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)


def model_bytes(model_dir: Path) -> int:
    """Bytes of the model file and its external data."""
    return sum((Path(model_dir) / n).stat().st_size for n in (MODEL_FILE, DATA_FILE) if (Path(model_dir) / n).is_file())


def _tie_head(model) -> bool:
    """The exporter folds the output layer's transpose into a second copy of a tied embedding
    (671 MB for Gemma 3 270M); point the head at the embedding again as `Gemm(x, E, transB=1)`."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    gathers = [n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in inits
               and len(inits[n.input[0]].dims) == 2]
    for idx, node in enumerate(list(model.graph.node)):
        if node.op_type != "MatMul" or node.input[1] not in inits:
            continue
        b = inits[node.input[1]]
        for emb in gathers:
            e = inits[emb]
            if list(b.dims) != list(e.dims)[::-1]:
                continue
            if not np.array_equal(numpy_helper.to_array(b), numpy_helper.to_array(e).T):
                continue
            model.graph.node.remove(node)
            model.graph.node.insert(idx, helper.make_node("Gemm", [node.input[0], emb], list(node.output),
                                                          name="lm_head_tied", transB=1))
            if not any(node.input[1] in n.input for n in model.graph.node):
                model.graph.initializer.remove(b)
            return True
    return False


def _untie_head(model) -> int:
    """Rewrite `Gemm(x, W, transB=1)` on a constant W (the output layer) as MatMul(x, W^T) with
    its own initializer, so the quantizers (which handle MatMul with a constant [K, N]) see it."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    done = 0
    for idx, node in enumerate(list(model.graph.node)):
        if node.op_type != "Gemm" or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or (len(node.input) > 2 and node.input[2]):
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            w = np.ascontiguousarray(w.T)
        name = node.input[1] + "_T" if attrs.get("transB", 0) else node.input[1] + "_mm"
        model.graph.initializer.append(numpy_helper.from_array(w, name))
        new = helper.make_node("MatMul", [node.input[0], name], list(node.output), name=(node.name or "head") + "_matmul")
        model.graph.node.remove(node)
        model.graph.node.insert(idx, new)
        done += 1
    return done


def _nbits():
    """onnxruntime's MatMulNBits quantizer classes. Importing the module calls
    `logging.basicConfig(level=INFO)` on the root logger (then every node is logged); undo that."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    return DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer


def quantize_onnx(model_dir: Path, out_dir: Path, kind: str, overwrite: bool = False, block_size: int = 32,
                  symmetric: bool = False) -> Path:
    """INT8 (dynamic, QInt8 weights) or INT4 (weight-only MatMulNBits, blocks of `block_size`,
    asymmetric unless `symmetric`) copy of an fp32 export, with its sidecar files. Returns `out_dir`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer = _nbits()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if kind not in QUANT_KINDS:
        raise ValueError(f"quantization kind {kind!r} is not one of {', '.join(QUANT_KINDS)}")
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{model_dir} has no {META_FILE}: give a folder `export_onnx` wrote")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("quantization", "fp32") != "fp32":
        raise ValueError(f"{model_dir} is already quantized ({meta['quantization']}); quantize the fp32 export")
    if model_dir.resolve() == out_dir.resolve():
        raise ValueError("source and destination are the same folder")
    start = time.perf_counter()
    model = _load(model_dir / MODEL_FILE)
    with atomic_dir(out_dir, overwrite, model_bytes(model_dir) // 2 + 64 * MB) as tmp:
        status(f"quantizing {model_dir} to {kind} with onnxruntime ...")
        _untie_head(model)
        try:
            if kind == "int8":
                big = sum(len(t.raw_data) for t in model.graph.initializer) > EXTERNAL_DATA_BYTES * 2
                quantize_dynamic(model, tmp / MODEL_FILE, weight_type=QuantType.QInt8, per_channel=True,
                                 use_external_data_format=big, extra_options={"MatMulConstBOnly": True})
            else:
                cfg = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=symmetric,
                                                   op_types_to_quantize=("MatMul", "Gather"),
                                                   quant_axes=(("MatMul", 0), ("Gather", 1)))
                quantizer = MatMulNBitsQuantizer(model, algo_config=cfg)
                import numpy as np

                with np.errstate(divide="ignore", invalid="ignore"):  # all-zero blocks: scale 0, handled by ORT
                    quantizer.process()
                _save(quantizer.model.model, tmp / MODEL_FILE)
        except Exception as exc:
            raise ExportFailed(f"onnxruntime could not quantize {model_dir} to {kind}: {exc}") from exc
        _copy_sidecars(model_dir, tmp)
        meta.update(quantization=kind, block_size=block_size if kind == "int4" else None,
                    symmetric=symmetric if kind == "int4" else None, source=str(model_dir))
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    status(f"wrote {out_dir / MODEL_FILE} ({model_bytes(out_dir) / MB:.1f} MiB, {kind}) in "
            f"{time.perf_counter() - start:.0f} s")
    return out_dir
