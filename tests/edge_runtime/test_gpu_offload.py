"""GPU servers: the profile's layer offload reaches llama.cpp, `fit` counts GPU and host memory
apart, and a CPU-only llama.cpp build asked for GPU layers says so instead of silently running
on the CPU (this machine's build is CPU-only; on a CUDA build the warning tests are skipped)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from edge_runtime.fit import fit
from edge_runtime.profiles import get_profile, gpu_layers_for, load_profiles

from .conftest import RECEIPTS, make_run_dir


def _cpu_only() -> bool:
    import llama_cpp

    return not llama_cpp.llama_supports_gpu_offload()


def test_profiles_say_how_many_layers_to_offload(tmp_path):
    profiles = load_profiles()
    assert profiles["gpu-server"].gpu_layers == -1 and profiles["gpu-server"].host_memory_gb
    assert profiles["router-8gb"].gpu_layers == 0 and profiles["edge-box"].gpu_layers == 0
    assert gpu_layers_for("gpu-server") == -1 and gpu_layers_for("router-8gb") == 0
    assert gpu_layers_for("gpu-server", 0) == 0 and gpu_layers_for("router-8gb", 12) == 12  # --gpu-layers wins
    assert gpu_layers_for("a-profile-this-machine-lacks") == 0
    with pytest.raises(ValueError, match="--gpu-layers -2"):
        gpu_layers_for("gpu-server", -2)
    (tmp_path / "p.yaml").write_text("mine:\n  memory_gb: 8\n  gpu_layers: -3\n")
    with pytest.raises(ValueError, match="gpu_layers"):
        load_profiles(tmp_path / "p.yaml")


def test_fit_counts_gpu_and_host_memory_apart(gemma_gguf, tmp_path):
    gpu = get_profile("gpu-server")
    full = fit(gemma_gguf, gpu, n_ctx=4096)
    cpu = fit(gemma_gguf, gpu, n_ctx=4096, gpu_layers=0)  # --gpu-layers 0: all of it on the host
    half = fit(gemma_gguf, gpu, n_ctx=4096, gpu_layers=9)  # 9 of 18 layers
    assert full.gpu_layers == 18 and full.gpu_bytes == full.total_bytes and full.fits
    assert full.gpu_bytes > full.weights_bytes  # weights, KV cache and compute buffers on the GPU
    assert full.host_bytes == full.overhead_bytes  # the runtime and vocabulary only
    assert cpu.gpu_layers == 0 and cpu.gpu_bytes == 0 and cpu.host_bytes == cpu.total_bytes
    assert cpu.total_bytes == fit(gemma_gguf, get_profile("router-8gb"), n_ctx=4096).total_bytes
    assert abs(half.gpu_bytes - half.compute_bytes - (full.weights_bytes + full.kv_bytes) / 2) < 1024
    assert full.host_bytes < half.host_bytes < cpu.host_bytes
    text = full.summary()
    assert "GPU (18 layers offloaded)" in text and "host memory" in text
    # a server whose GPU is big enough but whose host RAM is not: the host check refuses
    (tmp_path / "p.yaml").write_text("small-host:\n  memory_gb: 24\n  reserve_gb: 0\n  accelerator: cuda\n"
                                     "  gpu_layers: 9\n  host_memory_gb: 0.1\n")
    small = fit(gemma_gguf, get_profile("small-host", tmp_path / "p.yaml"), n_ctx=4096)
    assert small.gpu_bytes < small.budget_bytes and small.host_bytes > small.host_budget_bytes and not small.fits
    assert small.max_ctx == 0


@pytest.mark.skipif(not _cpu_only(), reason="this llama.cpp build offloads to a GPU")
def test_cpu_only_build_warns_and_still_answers(tiny_f16_gguf):
    from edge_runtime.engines.llamacpp import GpuOffloadUnavailable, load_llama

    with pytest.warns(GpuOffloadUnavailable, match="CPU-only.*--gpu-layers 0"):
        llm = load_llama(tiny_f16_gguf, n_ctx=256, n_threads=1, n_gpu_layers=-1)
    try:
        assert llm.model_params.n_gpu_layers != 0  # what was asked reached llama.cpp
        assert len(llm.tokenize(b"hello")) > 0
    finally:
        llm.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no offload asked: no warning
        llm = load_llama(tiny_f16_gguf, n_ctx=256, n_threads=1, n_gpu_layers=0)
        assert llm.model_params.n_gpu_layers == 0
        llm.close()


@pytest.mark.skipif(not _cpu_only(), reason="this llama.cpp build offloads to a GPU")
def test_predict_with_a_gpu_server_bundle_warns_on_a_cpu_only_build(tiny_f16_gguf, tmp_path):
    from edge_runtime.bundle import pack_run

    bundle = pack_run(make_run_dir(tmp_path, tiny_f16_gguf, RECEIPTS, max_new_tokens=8), "gpu-server", tmp_path / "b")
    base = [sys.executable, "-m", "edge_runtime.cli", "predict", str(bundle), "--threads", "2",
            "--input", "ACME SDN BHD\nTOTAL 12.50"]
    warned = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert "CPU-only" in warned.stderr and "--gpu-layers 0" in warned.stderr, warned.stderr[-2000:]
    assert '"answer"' in warned.stdout or '"valid"' in warned.stdout, warned.stdout[-2000:]
    quiet = subprocess.run([*base, "--gpu-layers", "0"], capture_output=True, text=True, timeout=300)
    assert "CPU-only" not in quiet.stderr, quiet.stderr[-2000:]
