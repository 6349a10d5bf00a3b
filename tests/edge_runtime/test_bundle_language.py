"""A bundle carries its task's resolved prompt language: the device renders the Chinese prompt the
student was trained on, from the bundle's own task.json."""

from __future__ import annotations

import json

from edge_runtime.bundle import load_bundle, pack_run
from edge_runtime.task import TaskSpec

from .conftest import make_run_dir

RECEIPTS_ZH = {
    "name": "receipts-zh", "kind": "extraction",
    "instructions": "Extract the seller and the total.",  # English instructions, Chinese data: resolved to zh
    "input_field": "ocr_lines",
    "fields": {"company": {}, "total": {"type": "amount"}},
}


def test_the_bundle_renders_the_prompt_the_recipe_trained_with(tmp_path, gemma_gguf):
    trained = TaskSpec.model_validate(RECEIPTS_ZH)
    trained.resolve_language(["杭州云栖餐饮管理有限公司", "价税合计（大写）壹仟贰佰叁拾肆元伍角"])
    run = make_run_dir(tmp_path, gemma_gguf, json.loads(trained.to_json()))
    bundle = load_bundle(pack_run(run, "router-8gb", tmp_path / "bundle"))
    assert json.loads((tmp_path / "bundle" / "task.json").read_text())["language"] == "zh"
    example = {"ocr_lines": ["杭州云栖餐饮管理有限公司", "合计 ¥1,234.50"]}
    assert bundle.task.render_prompt(example) == trained.render_prompt(example)
    assert "### 输出（JSON）：" in bundle.task.render_prompt(example)
