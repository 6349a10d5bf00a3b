"""The real QLoRA path (NF4 + double quant base, LoRA on top, merge) run on CPU.

bitsandbytes 0.50's CPU backend runs NF4 forward and backward, so `train_student(...,
allow_cpu_qlora=True)` exercises exactly what a CUDA run does: load in 4 bits, PEFT's
k-bit preparation, TRL training, saving the adapter, merging into the full-precision base.
Users on CPU still get `QLoRANeedsCUDA` (tests/distill/train/test_train.py).
"""

import json

import pytest
import torch
from transformers import TrainerCallback

from distill.train import train_student

pytest.importorskip("bitsandbytes")

# merged (fp32 weights, LoRA folded in) vs fp32 base + adapter kept separate: the same
# float32 math in a different order, so only rounding differs
TOL = {"rtol": 1e-4, "atol": 1e-4}
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class SeeQuantizedLayers(TrainerCallback):
    """At every step, record what the trained model's linear layers are."""

    def __init__(self):
        self.seen: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kw):
        self._snap("step", state, model)

    def on_evaluate(self, args, state, control, model=None, **kw):
        self._snap("evaluate", state, model)

    def _snap(self, event, state, model):
        import bitsandbytes as bnb

        layers = {}
        for name, mod in model.named_modules():
            if name.rsplit(".", 1)[-1] in LINEARS:
                qs = getattr(mod.get_base_layer().weight, "quant_state", None)
                layers[name] = {
                    "linear4bit": isinstance(mod.get_base_layer(), bnb.nn.Linear4bit),
                    "lora": hasattr(mod, "lora_A"),
                    "quant_type": getattr(qs, "quant_type", None),
                    "double_quant": bool(getattr(qs, "nested", False)),
                    "weight_dtype": str(mod.get_base_layer().weight.dtype),
                    # bitsandbytes' inference-only AVX512-BF16 layout has no backward to the input
                    "cpu_inference_packed": bool(getattr(qs, "packing_format_for_cpu", False)),
                }
        self.seen.append({"event": event, "step": state.global_step, "layers": layers})


@pytest.fixture(scope="module")
def qlora_run(small_student, receipts_recipe, receipt_rows, tiny_gemma_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("qlora") / "run"
    student = small_student(receipts_recipe, tiny_gemma_dir, max_steps=2, eval_steps=1)
    student.method = "qlora"
    seen = SeeQuantizedLayers()
    metrics = train_student(student, receipts_recipe.task, receipt_rows[:8], out, callbacks=[seen],
                            allow_cpu_qlora=True)
    return out, metrics, seen.seen


def test_trains_on_nf4_double_quant_linear4bit_layers(qlora_run):
    _, metrics, seen = qlora_run
    assert metrics["method"] == "qlora" and metrics["steps"] == 2
    # step 2 trains after an evaluation (eval mode, no grad: where bitsandbytes' CPU backend would repack)
    assert [(s["event"], s["step"]) for s in seen] == [("step", 1), ("evaluate", 1), ("step", 2), ("evaluate", 2)]
    for snap in seen:
        assert len(snap["layers"]) == 2 * len(LINEARS)  # every projection of both decoder layers
        for name, layer in snap["layers"].items():
            assert layer == {"linear4bit": True, "lora": True, "quant_type": "nf4", "double_quant": True,
                             "weight_dtype": "torch.uint8", "cpu_inference_packed": False}, name
    assert metrics["train_loss"] > 0 and metrics["eval_losses"]


def test_adapter_and_merged_written_and_merged_is_full_precision(qlora_run):
    out, metrics, _ = qlora_run
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "adapter" / "adapter_model.safetensors").exists()
    cfg = json.loads((out / "merged" / "config.json").read_text())
    assert "quantization_config" not in cfg, "the merged model must be full precision, not NF4"
    from safetensors.torch import load_file

    weights = load_file(out / "merged" / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())
    assert not any("absmax" in k or "quant_map" in k for k in weights)
    assert metrics["merged_dir"] == str(out / "merged")


def test_merged_equals_full_precision_base_plus_adapter(qlora_run, tiny_gemma_dir, tiny_tokenizer, receipts_recipe,
                                                        receipt_rows):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _, _ = qlora_run
    ids = tiny_tokenizer(receipts_recipe.task.render_prompt(receipt_rows[20]), return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        plain = base(ids).logits
    with_adapter = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    assert merged.dtype == torch.float32
    with torch.no_grad():
        a, m = with_adapter(ids).logits, merged(ids).logits
    assert not torch.allclose(plain, a, atol=1e-4), "training did not change the model"
    torch.testing.assert_close(m, a, **TOL)
    assert merged.get_output_embeddings().weight.data_ptr() == merged.get_input_embeddings().weight.data_ptr()


def test_memory_estimate_for_qlora_recorded(qlora_run, tiny_gemma_dir):
    from transformers import AutoConfig

    from distill.train.memory import count_params

    out, metrics, _ = qlora_run
    saved = json.loads((out / "train_metrics.json").read_text())
    assert saved["method"] == "qlora" and saved["memory_estimate_bytes"] == metrics["memory_estimate_bytes"] > 0
    parts = saved["memory_estimate_parts"]
    assert sum(parts.values()) == saved["memory_estimate_bytes"]
    assert saved["peak_memory_bytes"] > 0
    # 4-bit linear layers: less than the same model's float32 weights, more than its non-linear part alone
    total, linear, _ = count_params(AutoConfig.from_pretrained(tiny_gemma_dir), "all-linear", 8)
    assert (total - linear) * 4 < parts["weights"] < total * 4
