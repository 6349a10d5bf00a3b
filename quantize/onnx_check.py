"""Does the ONNX export answer like the HF student? The same check as for GGUFs.

Two levels: the first generation step's logits (max absolute difference, relative to the HF
logits' largest magnitude; fp32 must stay within FP32_REL_TOL) and the greedy answers on task
prompts (identical token sequences, and the same parsed answer when a task is given). Both
sides are fed the same token ids, so a difference is the model's, not the tokenizer's; that
the runtime's tokenizer gives those ids is counted separately (`tokenization_mismatches`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FP32_REL_TOL = 1e-3  # max |logit diff| / max |HF logit| on the first step, fp32 export


def hf_reference(hf_dir: Path, prompts: list[str], max_new_tokens: int) -> dict[str, Any]:
    """HF greedy token ids (EOS excluded), prompt ids and first-step logits for each prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from quantize.progress import bar

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id if model.generation_config else tok.eos_token_id
    eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
    out: dict[str, Any] = {"prompt_ids": [], "ids": [], "first_logits": []}
    with bar("HF greedy answers", len(prompts)) as advance, torch.inference_mode():
        for p in prompts:
            ids = tok(p).input_ids
            x = torch.tensor([ids])
            out["first_logits"].append(model(x, logits_to_keep=1).logits[0, -1].float().numpy())
            gen = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
            new = [int(t) for t in gen[0, len(ids):]]
            cut = next((i for i, t in enumerate(new) if t in eos), len(new))
            out["prompt_ids"].append(ids)
            out["ids"].append(new[:cut])
            advance()
    out["decode"] = lambda ids: tok.decode(ids, skip_special_tokens=True)
    return out


def check_onnx_against_hf(hf_dir: Path, onnx_dir: Path, prompts: list[str], max_new_tokens: int = 64,
                          task: Any = None, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """Agreement of the ONNX model in `onnx_dir` with the HF model in `hf_dir` on `prompts`.
    Pass `reference` (from `hf_reference`) to check several ONNX types against one HF run."""
    import numpy as np

    from edge_runtime.engines.onnx import OnnxPredictor
    from edge_runtime.task import TaskSpec
    from quantize.progress import bar

    ref = reference or hf_reference(Path(hf_dir), prompts, max_new_tokens)
    spec = task or TaskSpec(name="check", kind="classification", instructions="-", labels=["a", "b"])
    onnx = OnnxPredictor(onnx_dir, spec, max_new_tokens=max_new_tokens)
    exact = same = parsed = tok_mismatch = 0
    diffs, rels, agree, examples = [], [], [], []
    with bar(f"ONNX greedy answers ({Path(onnx_dir).name})", len(prompts)) as advance:
        for p, ids, want, hf_logits in zip(prompts, ref["prompt_ids"], ref["ids"], ref["first_logits"]):
            tok_mismatch += onnx.prompt_ids(p) != ids
            logits = onnx.session.run(["logits"], onnx._feeds(ids, 0, None))[0][0]
            d = float(np.abs(logits - hf_logits).max())
            diffs.append(d)
            rels.append(d / max(float(np.abs(hf_logits).max()), 1e-12))
            agree.append(int(logits.argmax()) == int(hf_logits.argmax()))
            got = onnx.greedy_ids(ids, max_new_tokens)
            exact += got == want
            if task is not None:
                ref_answer = task.parse(ref["decode"](want))[0]
                parsed += ref_answer is not None
                same += ref_answer == task.parse(onnx.tokenizer.decode(got, skip_special_tokens=True))[0]
            if got != want and len(examples) < 3:
                examples.append({"hf": ref["decode"](want)[:200],
                                 "onnx": onnx.tokenizer.decode(got, skip_special_tokens=True)[:200]})
            advance()
    n = max(1, len(prompts))
    return {
        "onnx": str(onnx_dir), "quantization": onnx.meta.get("quantization"), "size_bytes": onnx.size_bytes,
        "n": len(prompts), "exact": exact, "rate": exact / n,
        "same_answer": same if task is not None else None, "answer_rate": same / n if task is not None else None,
        "reference_parsed": parsed if task is not None else None,
        "first_step": {"max_abs_diff": max(diffs, default=0.0), "max_rel_diff": max(rels, default=0.0),
                       "argmax_agreement": sum(agree) / n},
        "tokenization_mismatches": tok_mismatch, "examples": examples,
    }
