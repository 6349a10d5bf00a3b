"""The notebooks execute top to bottom, with tiny settings (EDGE_DISTILL_TINY=1: a tiny random
student, a few steps), against the real CLI, real servers on loopback and the real openai client."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extra installs nbformat: pip install -e .[test]")
nbclient = pytest.importorskip("nbclient", reason="the test extra installs nbclient: pip install -e .[test]")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["01-quickstart-walkthrough.ipynb", "02-bring-your-own-task.ipynb"])
def test_notebook_executes(name, monkeypatch):
    monkeypatch.setenv("EDGE_DISTILL_TINY", "1")  # inherited by the kernel
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError naming the failing cell and its traceback
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert os.environ["EDGE_DISTILL_TINY"] == "1"
