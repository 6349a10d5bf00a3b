"""Which sharding the launcher's environment asks for, and what training really gets on CPU."""

import pytest

from distill import distributed

LAUNCHES = {
    "single": {},
    "ddp": {"WORLD_SIZE": "2"},
    "fsdp": {"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "true"},
    "fsdp-grad-op": {"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1",
                     "FSDP_SHARDING_STRATEGY": "SHARD_GRAD_OP"},
    "zero2": {"WORLD_SIZE": "4", "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
    "zero3": {"WORLD_SIZE": "4", "ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
}


@pytest.fixture
def launch(monkeypatch):
    def set_env(env):
        for key in ("WORLD_SIZE", "RANK", "ACCELERATE_USE_FSDP", "FSDP_VERSION", "FSDP_RESHARD_AFTER_FORWARD",
                    "FSDP_SHARDING_STRATEGY", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    return set_env


@pytest.mark.parametrize("expected", LAUNCHES)
def test_strategy_from_the_launch_environment(launch, expected):
    launch(LAUNCHES[expected])
    assert distributed.strategy() == expected
    assert distributed.effective_strategy("cuda") == (expected, None)


def test_sharding_asked_on_cpu_is_plain_ddp_and_says_so(launch):
    launch({**LAUNCHES["fsdp"], "RANK": "1"})
    strategy, note = distributed.effective_strategy("cpu")
    assert strategy == "ddp" and "fsdp" in note and "GPUs only" in note and "whole model" in note
    assert not distributed.is_main() and distributed.world_size() == 2
    launch(LAUNCHES["ddp"])
    assert distributed.effective_strategy("cpu") == ("ddp", None) and distributed.is_main()
