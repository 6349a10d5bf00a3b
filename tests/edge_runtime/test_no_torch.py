"""A router installs only the runtime: importing all of edge_runtime loads no training stack."""

import subprocess
import sys

CODE = """
import sys
import edge_runtime.server, edge_runtime.cli, edge_runtime.bundle, edge_runtime.router, edge_runtime.fit
import edge_runtime.ocr, edge_runtime.bench, edge_runtime.profiles, edge_runtime.engines.llamacpp
edge_runtime.server.create_app  # noqa
banned = [m for m in ("torch", "transformers", "peft", "trl", "datasets") if m in sys.modules]
print(banned)
"""


def test_edge_runtime_imports_no_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
