"""`<type>+lora` artifacts: a quantized base plus the F16 adapter, evaluated, packed and
verified as one model; llama.cpp applies the adapter at load time."""

import json

import pytest

from quantize.adapter import adapter_types, base_model_dir, build_adapter_artifacts, split_type


def test_split_type_and_names():
    assert split_type("q4_k_m+lora") == ("q4_k_m", True)
    assert split_type("q8_0") == ("q8_0", False)
    assert "q4_k_m+lora" in adapter_types() and "bf16+lora" not in adapter_types()


def test_base_model_dir_refuses_a_full_finetune(tmp_path):
    with pytest.raises(FileNotFoundError, match="LoRA student"):
        base_model_dir(tmp_path)


@pytest.fixture(scope="module")
def pair(adapter_and_merged, tmp_path_factory):
    adapter, _ = adapter_and_merged
    return build_adapter_artifacts(adapter, tmp_path_factory.mktemp("pair"), ["q8_0", "q8_0+lora", "f16+lora"])


def test_build_adapter_artifacts(pair):
    assert set(pair) == {"q8_0+lora", "f16+lora"}  # plain types are not this module's job
    base, adapter = pair["q8_0+lora"]
    assert base.name == "base-q8_0.gguf" and adapter.name == "adapter-f16.gguf"
    assert pair["f16+lora"][1] == adapter  # one adapter file serves every base type
    # a base outside the toolkit's cache is converted into the output folder, not into a hidden cache;
    # every artifact lives under the output folder by one naming rule
    assert pair["f16+lora"][0] == base.parent / "base-f16.gguf"
    assert base.stat().st_size < pair["f16+lora"][0].stat().st_size


def test_predictor_applies_adapter_like_the_merged_model(pair, adapter_and_merged, tmp_path):
    """Greedy answers from F16 base + adapter equal the merged F16 model's; size counts both files."""
    from edge_runtime.engines.llamacpp import LlamaCppPredictor
    from edge_runtime.task import TaskSpec
    from quantize.gguf import convert_to_gguf

    _, merged = adapter_and_merged
    merged_gguf = convert_to_gguf(merged, tmp_path / "merged-f16.gguf", "f16")
    task = TaskSpec(name="sentiment", kind="classification", instructions="Label the review.", input_field="text",
                    labels=["positive", "negative", "neutral"])
    base, adapter = pair["f16+lora"]
    with_adapter = LlamaCppPredictor(base, task, lora_path=adapter, max_new_tokens=16)
    plain = LlamaCppPredictor(merged_gguf, task, max_new_tokens=16)
    try:
        assert with_adapter.size_bytes == base.stat().st_size + adapter.stat().st_size
        for text in ("great phone, works well", "broke after a day", "it is a phone"):
            a, b = with_adapter.predict({"text": text}), plain.predict({"text": text})
            assert a.raw == b.raw
    finally:
        with_adapter.close()
        plain.close()
    with pytest.raises(FileNotFoundError, match="adapter"):
        LlamaCppPredictor(base, task, lora_path=tmp_path / "missing.gguf")


def test_bundle_carries_and_verifies_the_adapter(pair, tmp_path):
    from edge_runtime.bundle import BundleError, load_bundle, pack, verify
    from edge_runtime.task import TaskSpec

    task = TaskSpec(name="sentiment", kind="classification", instructions="Label the review.", input_field="text",
                    labels=["positive", "negative"])
    base, adapter = pair["q8_0+lora"]
    out = pack(base, task, tmp_path / "bundle", model_name="base-q8_0.gguf", adapter=adapter)
    bundle = load_bundle(out)
    assert bundle.adapter_path == out / "adapter.gguf" and bundle.adapter_path.is_file()
    fit = json.loads((out / "fit.json").read_text())
    assert fit["weights_bytes"] == base.stat().st_size + adapter.stat().st_size
    with open(out / "adapter.gguf", "r+b") as fh:  # a changed adapter is refused, by name
        fh.seek(-1, 2)
        fh.write(b"\x01")
    with pytest.raises(BundleError, match="adapter.gguf"):
        verify(out)
    (out / "adapter.gguf").unlink()
    with pytest.raises(BundleError, match="adapter.gguf"):
        verify(out)
