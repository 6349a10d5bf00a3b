"""Shared fixtures: real models built or unpacked offline, never downloaded."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"


@pytest.fixture(scope="session")
def tiny_gemma_dir() -> Path:
    """A tiny random Gemma 3 (2 layers, hidden 64) with the real tokenizer, cached across runs."""
    from distill.models.resolve import cache_dir
    from distill.models.tiny import build_tiny_gemma

    return build_tiny_gemma(cache_dir() / "models" / "tiny-gemma-test-v2")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF from the PyPI package."""
    from distill.models.resolve import gemma_270m_gguf

    return gemma_270m_gguf()


@pytest.fixture(scope="session")
def quickstart_recipe() -> Path:
    return QUICKSTART
