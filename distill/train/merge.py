"""Merge a LoRA adapter into its base weights: a standard HF checkpoint for quantization.

The base is reloaded unquantized (a QLoRA adapter is merged into bf16/fp32 weights, never
into 4-bit ones), the adapter applied and folded in with PEFT's `merge_and_unload`, and the
result saved with the tokenizer and the template.json the student was trained with. LoRA
never targets the output layer here, so a tied embedding stays tied.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from distill.train.data import TEMPLATE_FILE


def merge_adapter(base_path: str, adapter_dir: Path, out_dir: Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write base + adapter as one checkpoint to `out_dir` (replacing it) and return it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} is not a PEFT adapter (no adapter_config.json); train first")
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    if getattr(merged.config, "tie_word_embeddings", False):
        emb, out = merged.get_input_embeddings().weight, merged.get_output_embeddings().weight
        if emb.data_ptr() != out.data_ptr():
            raise RuntimeError("merging untied the embedding from the output layer; refusing to save a wrong model")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(tmp)
    shutil.copy2(adapter_dir / TEMPLATE_FILE, tmp / TEMPLATE_FILE)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
