"""What only a GPU can show: LoRA/QLoRA training tokens/s and peak memory for 1.5B- and
7B-shaped students (random weights, no download), against `distill.train.memory`'s estimate,
and llama.cpp's decode speed with every layer offloaded against none.

Each case is timed over a few steps of our answer-only loss (`distill.train.loss`) after a
warm-up step; peak memory is torch.cuda.max_memory_allocated. Without CUDA it says what it
would measure and exits 0, so it can sit in the repository until a GPU is lent:

    python benchmarks/gpu_training.py                       # every case (not yet run on a GPU)
    python benchmarks/gpu_training.py --shapes qwen2.5-1.5b --methods lora --steps 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = ("qwen2.5-1.5b", "qwen2.5-7b")
METHODS = ("lora", "qlora")


def _quantize_linears(model):
    """Swap every Linear but the output layer for bitsandbytes NF4 (double quant), as QLoRA loads it."""
    import bitsandbytes as bnb
    import torch

    out_emb = model.get_output_embeddings()
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, torch.nn.Linear) and child is not out_emb:
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, quant_type="nf4")
                q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4",
                                             compress_statistics=True)
                if child.bias is not None:
                    q.bias = torch.nn.Parameter(child.bias.data.cpu(), requires_grad=False)
                setattr(mod, child_name, q)
    return model


def train_case(shape: str, method: str, batch: int, seq: int, answer: int, steps: int, r: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from distill.models.resolve import hf_config_for
    from distill.train.loss import answer_only_loss
    from distill.train.memory import TrainingShape, estimate

    cfg = hf_config_for(shape)
    torch.manual_seed(0)
    gc = shape.endswith("7b")  # what a 7B recipe on one GPU would turn on
    if method == "qlora":
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)  # on the host, then NF4 on the GPU
        model = _quantize_linears(model).to("cuda")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc)
    else:
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.requires_grad_(False)
        if gc:
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device="cuda")
    labels = torch.full_like(ids, -100)
    labels[:, -answer:] = ids[:, -answer:]
    mask = torch.ones_like(ids)

    def step():
        loss = answer_only_loss(model, ids, labels, mask)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    step()  # warm-up: kernels, allocator, optimizer state
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated()
    est = estimate(cfg, TrainingShape(method, r, "all-linear", batch, seq, batch * answer, gc, True,
                                      weight_bytes=2, act_bytes=2, device="cuda"))
    del model, opt
    torch.cuda.empty_cache()
    return {"case": f"{shape} {method}", "batch": batch, "seq": seq, "gradient_checkpointing": gc,
            "tokens_per_s": round(batch * seq * steps / seconds), "peak_gib": round(peak / 2**30, 2),
            "estimate_gib": round(est.total_bytes / 2**30, 2), "estimate_error": round(est.total_bytes / peak - 1, 3)}


def decode_case(tokens: int) -> list[dict]:
    """llama.cpp decode tokens/s of the bundled Gemma 3 270M GGUF: no layers offloaded, then all."""
    import llama_cpp

    from distill.models.resolve import gemma_270m_gguf
    from edge_runtime.engines.llamacpp import load_llama

    if not llama_cpp.llama_supports_gpu_offload():
        return [{"case": "llama.cpp offload", "skipped": "this llama-cpp-python build is CPU-only; reinstall with "
                 "CMAKE_ARGS=\"-DGGML_CUDA=on\" pip install --force-reinstall --no-cache-dir llama-cpp-python"}]
    out = []
    for layers in (0, -1):
        llm = load_llama(gemma_270m_gguf(), n_ctx=1024, n_gpu_layers=layers)
        llm.create_completion("Write a short story about a receipt.", max_tokens=8)  # warm
        start = time.perf_counter()
        res = llm.create_completion("Write a short story about a receipt.", max_tokens=tokens, temperature=0.0)
        seconds = time.perf_counter() - start
        out.append({"case": f"llama.cpp gemma-3-270m q4_k_m gpu_layers={layers}",
                    "decode_tokens_per_s": round(res["usage"]["completion_tokens"] / seconds, 1)})
        llm.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--answer", type=int, default=128, help="labelled tokens at the end of each row")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--no-decode", action="store_true", help="skip the llama.cpp offload case")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing measured. On a GPU this prints, per case, training tokens/s, peak "
              f"memory and distill's estimate for {', '.join(args.shapes)} x {', '.join(args.methods)} "
              f"(batch {args.batch} x {args.seq} tokens, random weights), and llama.cpp decode tokens/s "
              "with no layers offloaded against all.")
        return 0
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for shape in args.shapes:
        for method in args.methods:
            try:
                print(json.dumps(train_case(shape, method, args.batch, args.seq, args.answer, args.steps, args.r)),
                      flush=True)
            except torch.cuda.OutOfMemoryError as exc:
                print(json.dumps({"case": f"{shape} {method}", "error": f"out of GPU memory: {exc}"[:300]}), flush=True)
                torch.cuda.empty_cache()
    if not args.no_decode:
        for row in decode_case(args.decode_tokens):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
