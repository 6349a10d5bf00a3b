"""Reports from real run directories (real teach/curate stages, a tiny HF student, the
dataset teacher), checked as files and rendered in real headless Chromium."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from distill.cli import main
from distill.eval import evaluate_predictors
from distill.pipeline.runner import run_pipeline
from distill.pipeline.stages import read_jsonl, load_splits
from distill.recipe import load_recipe
from distill.report import write_report

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


@pytest.fixture(scope="module")
def tiny(tiny_gemma_dir):
    return tiny_gemma_dir


@pytest.fixture(scope="module")
def hf_name(tiny_gemma_dir):
    from distill.eval.predictors import predictor_name

    return predictor_name(f"hf:{tiny_gemma_dir}")


@pytest.fixture(scope="module")
def extraction_run(tmp_path_factory, tiny):
    """teach and curate for real, then teacher and tiny student evaluated into eval/."""
    run = tmp_path_factory.mktemp("runs") / "receipts"
    recipe = load_recipe(RECIPES / "receipts-small.yaml", ["eval.max_new_tokens=5", "eval.bootstrap_samples=100"])
    run_pipeline(recipe, run, until="curate", log=lambda m: None)
    rows = [{**r, "ocr_lines": r["ocr_lines"][:6]} for r in read_jsonl(run / "teach" / "eval.jsonl")[:3]]
    evaluate_predictors(recipe, run, ["teacher", f"hf:{tiny}"], rows, run / "eval")
    return run


@pytest.fixture(scope="module")
def classification_run(tmp_path_factory, tiny):
    """Banking intents: the teacher in eval/, the student in quantize/eval/ (as the stages do)."""
    run = tmp_path_factory.mktemp("runs") / "banking"
    recipe = load_recipe(RECIPES / "banking-intents.yaml", ["eval.max_new_tokens=4", "eval.bootstrap_samples=100"])
    rows = load_splits(recipe)[1][:4]
    evaluate_predictors(recipe, run, ["teacher"], rows, run / "eval")
    evaluate_predictors(recipe, run, [f"hf:{tiny}"], rows, run / "quantize" / "eval")
    return run


def test_extraction_report_files(extraction_run, hf_name):
    paths = write_report(extraction_run)
    assert [p.name for p in paths] == ["report.md", "report.html", "metrics.json"]
    md = (extraction_run / "report.md").read_text()
    for text in ("## Quality, speed and size", "| teacher |", f"| {hf_name} |", "per field",
                 "monthly cost at 100,000 requests a day", f"hybrid: {hf_name} answers", "Where they disagree with the teacher", "| teach |"):
        assert text in md, text
    doc = json.loads((extraction_run / "metrics.json").read_text())
    eco = doc["economics"]
    teacher_req = doc["predictors"]["teacher"]["cost"]["usd_per_request"]
    labelled = len((extraction_run / "teach" / "labelled.jsonl").read_text().splitlines())
    assert labelled == 80 and eco["one_time_usd"] == pytest.approx(labelled * teacher_req)  # labelled at the teacher's price
    assert eco["break_even"][hf_name]["break_even_requests_per_day"] > 0
    assert [p["threshold"] for p in eco["hybrid"][hf_name]] == doc["assumptions"]["hybrid_thresholds"]
    assert doc["machine"]["cpu_cores"] >= 1


def test_classification_report_merges_stage_dirs(classification_run, hf_name):
    write_report(classification_run)
    doc = json.loads((classification_run / "metrics.json").read_text())
    assert set(doc["predictors"]) == {"teacher", hf_name}
    student = doc["predictors"][hf_name]
    assert student["agreement_with_teacher"] is not None  # teacher answers found in eval/teacher
    assert student["metrics"]["confusion"]["rows"]
    html = (classification_run / "report.html").read_text()
    assert 'data-plot="confusion"' in html and "macro F1" in html


def test_compare_two_runs_and_cli(extraction_run, tmp_path):
    other = tmp_path / "receipts-b"
    shutil.copytree(extraction_run, other)
    assert main(["report", str(extraction_run), "--compare", str(other)]) == 0
    md = (extraction_run / "report.md").read_text()
    assert "## Compared runs" in md and "receipts-b: headline" in md
    assert 'data-plot="compare"' in (extraction_run / "report.html").read_text()


def test_a_directory_without_results_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="distill run"):
        write_report(tmp_path)


CHECK = """<script>window.addEventListener('load', () => {
  const out = [...document.images].map(i => [i.dataset.plot, i.complete, i.naturalWidth, i.naturalHeight]);
  const pre = document.createElement('pre'); pre.id = 'plot-check'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script>"""


def _render_in_chromium(html_path: Path, tmp_path: Path) -> list:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); CI installs it")
    page = tmp_path / "page.html"
    page.write_text(html_path.read_text().replace("</body>", CHECK + "</body>"))
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    match = re.search(r'<pre id="plot-check">(.*?)</pre>', dom, re.S)
    assert match, f"the check script did not run; chromium printed: {dom[:300]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


def _png_size(html: str, key: str) -> tuple[int, int]:
    import base64
    import struct

    data = re.search(rf'data-plot="{key}"[^>]*src="data:image/png;base64,([^"]+)"', html).group(1)
    return struct.unpack(">II", base64.b64decode(data)[16:24])


@pytest.mark.parametrize("which,expected", [
    ("extraction", {"quality_vs_cost", "breakdown", "latency", "hybrid", "compare"}),
    ("classification", {"quality_vs_cost", "breakdown", "confusion", "latency", "hybrid"}),
])
def test_every_plot_renders_in_headless_chromium(which, expected, extraction_run, classification_run, tmp_path):
    run = extraction_run if which == "extraction" else classification_run
    write_report(run, compare=[run] if which == "extraction" else [])
    html_path = run / "report.html"
    images = _render_in_chromium(html_path, tmp_path)
    assert {key for key, *_ in images} == expected
    html = html_path.read_text()
    for key, complete, width, height in images:
        assert complete and (width, height) == _png_size(html, key), f"plot {key} did not render"
        assert width > 300 and height > 200
