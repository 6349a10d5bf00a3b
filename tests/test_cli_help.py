"""Each console command lists its subcommands with a one-line description."""

import subprocess
import sys

import pytest

EXPECTED = {
    "distill": ["run", "validate", "teach", "curate", "train", "eval", "report", "presets"],
    "quantize": ["gguf", "lora", "check", "sweep", "types"],
    "edge-runtime": ["fit", "pack", "verify", "inspect", "serve", "predict", "bench", "report", "compare"],
}
MODULES = {"distill": "distill.cli", "quantize": "quantize.cli", "edge-runtime": "edge_runtime.cli"}


@pytest.mark.parametrize("command", list(EXPECTED))
def test_help_lists_subcommands(command):
    out = subprocess.run([sys.executable, "-m", MODULES[command], "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for sub in EXPECTED[command]:
        described = [l for l in lines if l.strip().startswith(sub + " ") and len(l.strip()) > len(sub) + 8]
        assert described, f"`{command} --help` does not describe `{sub}`:\n{out.stdout}"
