"""Memory fit: the estimate against llama-cpp-python's measured resident memory, and profiles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_runtime.fit import ModelShape, fit, read_gguf_metadata
from edge_runtime.profiles import Profile, get_profile, load_profiles

MEASURE = """
import json, sys, psutil, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=2, verbose=False)
toks = llm.tokenize(b"hello world " * 600)[:600]
llm.eval(toks)  # touch the weights and a full ubatch of activations
print(json.dumps(psutil.Process().memory_info().rss))
"""


@pytest.mark.parametrize("ctx", [1024, 8192])
def test_estimate_within_15_percent_of_measured_rss(gemma_gguf, ctx):
    out = subprocess.run([sys.executable, "-c", MEASURE, str(gemma_gguf), str(ctx)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    est = fit(gemma_gguf, get_profile("router-8gb"), n_ctx=ctx).total_bytes
    assert abs(est - rss) / rss < 0.15, (est, rss)


def test_gguf_header_reader(gemma_gguf):
    meta = read_gguf_metadata(gemma_gguf)
    assert meta["general.architecture"] == "gemma3" and meta["tokenizer.ggml.tokens"] == 262144
    shape = ModelShape.from_gguf(gemma_gguf)
    assert (shape.n_layer, shape.n_head_kv, shape.key_length, shape.n_ctx_train) == (18, 1, 256, 32768)


def test_fit_answers_yes_no_and_the_largest_that_fits(gemma_gguf, tmp_path):
    r = fit(gemma_gguf, get_profile("router-8gb"), n_ctx=4096, parallel=2)
    assert r.fits and r.max_parallel >= 2 and r.max_ctx == 32768 and "YES" in r.summary()
    (tmp_path / "p.yaml").write_text("tiny-mcu:\n  memory_gb: 0.5\n  reserve_gb: 0.1\n  cores: 1\n  arch: arm64\n")
    tiny = get_profile("tiny-mcu", tmp_path / "p.yaml")
    r = fit(gemma_gguf, tiny, n_ctx=32768)
    assert not r.fits and "NO" in r.summary()
    assert 0 < r.max_ctx < 32768 and fit(gemma_gguf, tiny, n_ctx=r.max_ctx).fits
    assert not fit(gemma_gguf, tiny, n_ctx=r.max_ctx + 1024).fits


def test_profiles_shipped_and_bad_user_file(tmp_path):
    profiles = load_profiles()
    assert {"router-8gb", "edge-box", "gpu-server"} <= set(profiles)
    assert profiles["router-8gb"].arch == "arm64" and profiles["edge-box"].memory_gb == 16
    (tmp_path / "bad.yaml").write_text("mine:\n  memory_gb: -1\n")
    with pytest.raises(ValueError, match="mine"):
        load_profiles(tmp_path / "bad.yaml")
    assert isinstance(profiles["gpu-server"], Profile)


def test_fit_cli(gemma_gguf, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "fit", str(gemma_gguf), "--profile", "router-8gb"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "YES" in ok.stdout
    (tmp_path / "bad.gguf").write_bytes(b"NOTGGUF")
    bad = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "fit", str(tmp_path / "bad.gguf")], capture_output=True, text=True)
    assert bad.returncode == 2 and "bad magic" in bad.stderr
