"""The shipped accelerate configs load with accelerate's own config reader."""

from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "recipes" / "accelerate").glob("*.yaml"))


def test_configs_shipped():
    assert {p.stem for p in CONFIGS} >= {"fsdp", "deepspeed_zero2", "deepspeed_zero3"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_reads_config(path):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type in ("FSDP", "DEEPSPEED") or str(cfg.distributed_type).endswith(("FSDP", "DEEPSPEED"))
    assert str(cfg.mixed_precision).endswith("bf16")
    if "zero" in path.stem:
        assert cfg.deepspeed_config["zero_stage"] == int(path.stem[-1])
    else:
        assert cfg.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
