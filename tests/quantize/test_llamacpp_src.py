"""The converters come from the installed llama-cpp-python version's own source distribution."""

from importlib import metadata

import pytest

from quantize import llamacpp_src


def test_converters_match_installed_version():
    src = llamacpp_src.llamacpp_dir()
    assert metadata.version("llama-cpp-python") in str(src)
    for name in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/__init__.py", "gguf-py/gguf/__init__.py"):
        assert (src / name).is_file(), name
    archs = llamacpp_src.supported_architectures(src)
    assert "Gemma3ForCausalLM" in archs and "LlamaForCausalLM" in archs and len(archs) > 50


def test_incomplete_override_is_refused(tmp_path, monkeypatch):
    (tmp_path / "convert_hf_to_gguf.py").write_text("")
    monkeypatch.setenv("EDGE_DISTILL_LLAMACPP_SRC", str(tmp_path))
    llamacpp_src.llamacpp_dir.cache_clear()
    try:
        with pytest.raises(llamacpp_src.LlamaCppSourceUnavailable, match="lacks"):
            llamacpp_src.llamacpp_dir()
    finally:
        monkeypatch.delenv("EDGE_DISTILL_LLAMACPP_SRC")
        llamacpp_src.llamacpp_dir.cache_clear()
