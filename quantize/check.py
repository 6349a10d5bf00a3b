"""Does the GGUF answer like the HF student? Checked before anything ships.

Three levels: the tokenizer facts in the GGUF metadata (end-of-sequence, begin-of-sequence,
chat template, and the token ids of probe strings), the logits on a short prompt, and
greedy answers on task prompts (the agreement rate per quantized type).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.engines.llamacpp import quiet_llama_logs
from edge_runtime.layout import N_CTX

PROBES = [
    "Receipt 12/03/2018 TOTAL: RM 45.60",
    '{"company": "ABC SDN BHD", "total": "9.00"}',
    "  leading spaces, tabs\tand\nnew lines; ünïcödé 日本語 €",
    "<start_of_turn>user\nhello<end_of_turn>\n",
]


def _close(llm: Any) -> None:
    try:
        llm.close()
    except Exception:  # llama.cpp's finaliser may already have run
        pass


def check_metadata(gguf_path: Path, hf_dir: Path) -> list[str]:
    """Problems with the GGUF's tokenizer facts compared with the HF tokenizer; empty when faithful."""
    import llama_cpp
    from llama_cpp import Llama
    from transformers import AutoTokenizer, GenerationConfig

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    quiet_llama_logs()
    llm = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    problems: list[str] = []
    try:
        meta = llm.metadata
        if tok.eos_token_id is not None and llm.token_eos() != tok.eos_token_id:
            problems.append(f"end-of-sequence token is {llm.token_eos()} in the GGUF but {tok.eos_token_id} "
                            f"({tok.eos_token!r}) in the tokenizer: generation would not stop where training taught it")
        if tok.bos_token_id is not None and llm.token_bos() != tok.bos_token_id:
            problems.append(f"begin-of-sequence token is {llm.token_bos()} in the GGUF but {tok.bos_token_id}")
        try:
            gen_eos = GenerationConfig.from_pretrained(str(hf_dir)).eos_token_id
        except OSError:
            gen_eos = None
        vocab = llm._model.vocab
        for eid in [gen_eos] if isinstance(gen_eos, int) else (gen_eos or []):
            if not llama_cpp.llama_vocab_is_eog(vocab, eid):
                problems.append(f"generation_config stops at token {eid} but llama.cpp does not treat it as end-of-generation")
        hf_template = getattr(tok, "chat_template", None)
        gguf_template = meta.get("tokenizer.chat_template")
        if hf_template and gguf_template != hf_template:
            problems.append("the tokenizer's chat template is " + ("missing from" if not gguf_template else "different in")
                            + " the GGUF (tokenizer.chat_template)")
        for text in PROBES:
            hf_ids = tok(text).input_ids
            ll_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
            if ll_ids != hf_ids:
                problems.append(f"tokenization differs on {text[:30]!r}: HF {hf_ids[:12]}... vs GGUF {ll_ids[:12]}...")
    finally:
        _close(llm)
    return problems


def compare_logits(gguf_path: Path, hf_dir: Path, text: str = PROBES[0]) -> dict[str, float]:
    """Max absolute logit difference (all positions) between the GGUF and the HF model, with the
    HF logits' standard deviation for scale, and how often their argmax agrees."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = tok(text).input_ids
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].float().numpy()
    quiet_llama_logs()
    llm = Llama(model_path=str(gguf_path), logits_all=True, n_ctx=max(64, len(ids) + 8), verbose=False)
    try:
        llm.eval(ids)
        ll = np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        _close(llm)
    n = min(hf.shape[1], ll.shape[1])  # llama.cpp drops padded embedding rows
    diff = np.abs(hf[:, :n] - ll[:, :n])
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "hf_std": float(hf.std()),
        "argmax_agreement": float((hf[:, :n].argmax(-1) == ll[:, :n].argmax(-1)).mean()),
        "tokens": len(ids),
    }


@dataclass
class Agreement:
    """Greedy answers of a GGUF against the HF model on the same prompts."""

    gguf: str
    n: int
    exact: int  # identical generated text
    same_answer: int  # same parsed answer (when a task is given)
    rate: float
    answer_rate: float
    reference_parsed: int = 0  # references that parsed as an answer (both unparseable also counts as "same")
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hf_greedy(hf_dir: Path, prompts: list[str], max_new_tokens: int = 128) -> list[str]:
    """Greedy continuations from the HF model (the reference the GGUFs are judged against)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from quantize.progress import bar

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    outs = []
    with bar("HF greedy answers", len(prompts)) as advance:
        for p in prompts:
            enc = tok(p, return_tensors="pt")
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id or tok.eos_token_id)
            outs.append(tok.decode(gen[0, enc.input_ids.shape[1]:], skip_special_tokens=True))
            advance()
    return outs


def gguf_greedy(gguf_path: Path, prompts: list[str], max_new_tokens: int = 128, n_ctx: int = N_CTX) -> list[str]:
    """Greedy continuations from the GGUF through llama-cpp-python, prompts given as text (the runtime's path)."""
    from llama_cpp import Llama

    from quantize.progress import bar

    quiet_llama_logs()
    llm = Llama(model_path=str(gguf_path), n_ctx=n_ctx, verbose=False, seed=0)
    outs = []
    try:
        with bar(f"GGUF greedy answers ({Path(gguf_path).name})", len(prompts)) as advance:
            for p in prompts:
                out = llm(p, max_tokens=max_new_tokens, temperature=0.0, top_k=1, repeat_penalty=1.0)
                outs.append(out["choices"][0]["text"])
                advance()
    finally:
        _close(llm)
    return outs


def answer_agreement(gguf_path: Path, prompts: list[str], reference: list[str], task: Any = None,
                     max_new_tokens: int = 128) -> Agreement:
    """Agreement of the GGUF's greedy answers with `reference` (from `hf_greedy`): exact text,
    and same parsed answer when `task` (an edge_runtime TaskSpec) is given."""
    got = gguf_greedy(gguf_path, prompts, max_new_tokens)
    exact = same = parsed = 0
    examples = []
    for p, ref, out in zip(prompts, reference, got):
        ok = ref.strip() == out.strip()
        exact += ok
        if task is not None:
            ref_answer = task.parse(ref)[0]
            parsed += ref_answer is not None
            same_ans = ref_answer == task.parse(out)[0]
        else:
            same_ans = ok
        same += same_ans
        if not ok and len(examples) < 3:
            examples.append({"reference": ref[:200], "gguf": out[:200]})
    n = max(1, len(prompts))
    return Agreement(str(gguf_path), len(prompts), exact, same, exact / n, same / n, parsed, examples)
