"""Issue #15 (Also): recipe.resolved.json carries no `user:pass@` and is written atomically."""

import json

from distill.pipeline.runner import write_resolved


def test_resolved_recipe_strips_credentials_and_replaces_atomically(make_recipe, tmp_path):
    teacher = {"kind": "openai", "base_url": "https://alice:s3cret@api.example.com/v1", "model": "m"}
    recipe, _, _ = make_recipe(teacher)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = run_dir / "recipe.resolved.json"
    old.write_text("{}")
    inode = old.stat().st_ino
    path = write_resolved(recipe, run_dir)
    text = path.read_text()
    assert "s3cret" not in text and "alice" not in text
    assert json.loads(text)["teacher"]["base_url"] == "https://api.example.com/v1"
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert [p.name for p in run_dir.iterdir()] == ["recipe.resolved.json"]  # no temporary file left
