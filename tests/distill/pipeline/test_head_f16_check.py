"""The quantize stage's check of a head student's quantized body + head against F16's."""

from distill.pipeline.stages import head_f16_check


def test_each_quantized_type_is_judged_against_f16_and_a_shortfall_is_said(capsys):
    predictors = {"gguf-f16": {"headline": 0.90}, "gguf-q8_0": {"headline": 0.90}, "gguf-q4_k_m": {"headline": 0.85}}
    check = head_f16_check(predictors, floor=0.98)
    assert check["q8_0"] == {"headline": 0.90, "f16_headline": 0.90, "share_of_f16": 1.0, "keeps_floor": True}
    assert check["q4_k_m"]["share_of_f16"] == round(0.85 / 0.90, 4) and check["q4_k_m"]["keeps_floor"] is False
    err = capsys.readouterr().err
    assert "gguf-q4_k_m" in err and "quantize.quality_floor" in err and "gguf-q8_0" not in err


def test_no_f16_reference_no_check():
    assert head_f16_check({"gguf-q4_k_m": {"headline": 0.8}}, floor=0.98) == {}
