"""The one routine behind the quantize stage, `quantize sweep` and `quantize gguf`: file names,
order, the importance-matrix rule of the type table, and what happens to files that exist."""

import shutil

import pytest

from quantize.artifacts import BuildSettings, build_gguf_artifacts
from quantize.gguf import OutputExists, quantize_gguf

TEXTS = [f"Receipt {i}: SHOP {i} SDN BHD, TOTAL RM {i * 3}.50, date 0{i % 9 + 1}/03/2018" for i in range(6)]


def test_builds_every_type_in_order_with_the_importance_matrix_where_the_table_says(tiny_llamacpp_gemma, tiny_f16_gguf,
                                                                                    tmp_path, monkeypatch):
    import quantize.artifacts

    given = {}  # what each real quantize_gguf call was given

    def recording(src, dst, qtype, imatrix=None, **kw):
        given[qtype] = imatrix
        return quantize_gguf(src, dst, qtype, imatrix=imatrix, **kw)

    monkeypatch.setattr(quantize.artifacts, "quantize_gguf", recording)
    out = tmp_path / "q"
    out.mkdir()
    shutil.copy(tiny_f16_gguf, out / "model-f16.gguf")  # the converter is exercised below
    built = build_gguf_artifacts(tiny_llamacpp_gemma, out,
                                 BuildSettings(["q6_k", "f16", "q4_k_m"], imatrix_texts=lambda: TEXTS, existing="reuse"))
    assert list(built) == ["f16", "q6_k", "q4_k_m"]  # the order the stage's record has
    assert {k: (m.name, a) for k, (m, a) in built.items()} == {
        "f16": ("model-f16.gguf", None), "q6_k": ("model-q6_k.gguf", None), "q4_k_m": ("model-q4_k_m.gguf", None)}
    assert given == {"q6_k": None, "q4_k_m": out / "imatrix.gguf"}  # gguf_types.TYPES marks q4_k_m, not q6_k
    plain = quantize_gguf(built["f16"][0], tmp_path / "plain-q4_k_m.gguf", "q4_k_m")
    assert built["q4_k_m"][0].read_bytes() != plain.read_bytes()  # and the quantizer used it


def test_existing_files_are_rebuilt_reused_or_refused(tiny_llamacpp_gemma, tiny_f16_gguf, tmp_path):
    out = tmp_path / "q"
    out.mkdir()
    shutil.copy(tiny_f16_gguf, out / "tiny-f16.gguf")
    (out / "tiny-q8_0.gguf").write_bytes(b"old")
    settings = BuildSettings(["q8_0"], name="tiny", existing="refuse")
    with pytest.raises(OutputExists, match="--overwrite"):  # `quantize gguf` without --overwrite
        build_gguf_artifacts(tiny_llamacpp_gemma, out, settings)
    assert (out / "tiny-q8_0.gguf").read_bytes() == b"old"
    # the sweep's default: what exists is reused, what is missing is made from the existing F16
    built = build_gguf_artifacts(tiny_llamacpp_gemma, out, BuildSettings(["q8_0", "q4_0"], name="tiny", existing="reuse"))
    assert built["q8_0"][0].read_bytes() == b"old"
    assert built["q4_0"][0].name == "tiny-q4_0.gguf" and built["q4_0"][0].read_bytes()[:4] == b"GGUF"
    built = build_gguf_artifacts(tiny_llamacpp_gemma, out, BuildSettings(["q8_0"], name="tiny"))  # the pipeline's
    assert built["q8_0"][0].read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in out.iterdir()) == ["tiny-f16.gguf", "tiny-q4_0.gguf", "tiny-q8_0.gguf"]


def test_plus_lora_without_an_adapter_folder_says_what_is_missing(tiny_llamacpp_gemma, tiny_f16_gguf, tmp_path):
    shutil.copy(tiny_f16_gguf, tmp_path / "model-f16.gguf")
    with pytest.raises(ValueError, match="adapter_dir"):
        build_gguf_artifacts(tiny_llamacpp_gemma, tmp_path, BuildSettings(["q8_0+lora"], existing="reuse"))


def test_no_importance_matrix_is_computed_when_no_type_reads_one(tiny_llamacpp_gemma, tiny_f16_gguf, tmp_path):
    def never():
        raise AssertionError("the importance matrix was computed for types that do not read it")

    out = tmp_path / "q"
    out.mkdir()
    shutil.copy(tiny_f16_gguf, out / "model-f16.gguf")
    built = build_gguf_artifacts(tiny_llamacpp_gemma, out, BuildSettings(["f16", "q8_0"], imatrix_texts=never, existing="reuse"))
    assert list(built) == ["f16", "q8_0"] and not (out / "imatrix.gguf").exists()
