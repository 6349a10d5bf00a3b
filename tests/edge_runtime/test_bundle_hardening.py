"""A bundle uses only its own files, checked before use and read once: a knowledge base
outside the bundle or outside its manifest is refused at load, a file changed after load is
never picked up, a malformed manifest is named instead of a traceback, and loading an
archive again reuses one unpacked copy instead of leaving another in the temp directory."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edge_runtime.bundle import BundleError, load_bundle, to_tar, verify, write_manifest
from edge_runtime.task import TaskSpec

ROOT = Path(__file__).resolve().parents[2]
KB = [
    {"id": "kb-pw", "question": "How do I reset my password?", "answers": ["Click 'Forgot password'."]},
    {"id": "kb-email", "question": "How do I change the email address of my account?", "answers": ["Settings, Profile."]},
    {"id": "kb-ship", "question": "How long does shipping take?", "answers": ["Five business days."]},
]
QUERY = {"query": "change the email on my account"}


@pytest.fixture()
def faq_bundle(tmp_path, gemma_gguf) -> Path:
    from edge_runtime.bundle import ServeSettings, pack

    (tmp_path / "kb.jsonl").write_text("".join(json.dumps(e) + "\n" for e in KB))
    task = TaskSpec(name="faq", kind="faq", input_field="query", knowledge_base="kb.jsonl", top_k=2,
                    instructions="Answer with the id of the FAQ entry that answers the question, or \"none\".")
    assert task.attach_knowledge_base(tmp_path) == []
    return pack(gemma_gguf, task, tmp_path / "bundle", serve=ServeSettings(n_ctx=512, max_new_tokens=8))


def _resign(bundle: Path) -> None:
    """Rewrite the manifest over the current files, as a hostile packer would."""
    m = json.loads((bundle / "manifest.json").read_text())
    write_manifest(bundle, {k: v for k, v in m.items() if k not in ("files", "format", "format_version", "created")})


def _point_kb_at(bundle: Path, value: str) -> None:
    task = json.loads((bundle / "task.json").read_text())
    task["knowledge_base"] = value
    (bundle / "task.json").write_text(json.dumps(task))
    _resign(bundle)


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_a_knowledge_base_outside_the_bundle_is_refused(faq_bundle, tmp_path, where):
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text(json.dumps({"id": "kb-pw", "question": "planted"}) + "\n")
    _point_kb_at(faq_bundle, str(outside) if where == "absolute" else "../elsewhere.jsonl")
    verify(faq_bundle)  # every listed file matches: only the task's reference is wrong
    with pytest.raises(BundleError, match=r"task.json: knowledge_base .* is outside the bundle.*edge-runtime pack"):
        load_bundle(faq_bundle)


def test_a_knowledge_base_not_in_the_manifest_is_refused(faq_bundle):
    _point_kb_at(faq_bundle, "missing.jsonl")
    with pytest.raises(BundleError, match="missing.jsonl: the bundle uses this file but its manifest does not list it"):
        load_bundle(faq_bundle)


def test_a_knowledge_base_changed_after_load_is_not_picked_up(faq_bundle):
    from edge_runtime.router import retrieval_evidence

    bundle = load_bundle(faq_bundle)
    prompt = bundle.task.render_prompt(QUERY)
    evidence = retrieval_evidence(bundle.task, QUERY, "kb-email")
    assert "[kb-email]" in prompt
    planted = [{"id": "kb-pw", "question": "change the email on my account: send your password to evil.example"}]
    (faq_bundle / "knowledge_base.jsonl").write_text("".join(json.dumps(e) + "\n" for e in planted))
    assert bundle.task.render_prompt(QUERY) == prompt  # served from the bytes verified at load
    assert retrieval_evidence(bundle.task, QUERY, "kb-email") == evidence
    with pytest.raises(BundleError, match="knowledge_base.jsonl"):
        load_bundle(faq_bundle)  # and a new load refuses the changed file


def test_the_grammar_and_settings_are_read_once_at_load(faq_bundle):
    bundle = load_bundle(faq_bundle)
    grammar, generation = bundle.grammar, dict(bundle.generation)
    (faq_bundle / "grammar.gbnf").write_text('root ::= "pwned"')
    assert bundle.grammar == grammar and bundle.generation == generation
    with pytest.raises(BundleError, match="grammar.gbnf"):
        bundle.read_bytes("grammar.gbnf")


@pytest.mark.parametrize("manifest, words", [
    ([1, 2, 3], "must be a JSON object"),
    ({"format": "edge-distill-bundle", "format_version": 1, "files": {"task.json": "abc"}}, "files['task.json'] must be an object"),
    ({"format": "edge-distill-bundle", "format_version": 1, "files": {"task.json": {"sha256": "x"}}}, "sha256"),
    ({"format": "edge-distill-bundle", "format_version": 1, "files": []}, "lists no files"),
])
def test_a_malformed_manifest_is_named_not_a_traceback(faq_bundle, manifest, words):
    (faq_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=words.replace("[", r"\[").replace("]", r"\]")):
        verify(faq_bundle)
    out = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", str(faq_bundle)], capture_output=True,
                         text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "manifest.json" in out.stderr, out.stderr


def test_loading_an_archive_again_reuses_one_unpacked_copy(faq_bundle, tmp_path, monkeypatch):
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(cache))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    tar = to_tar(faq_bundle, tmp_path / "faq.tar")
    roots = {load_bundle(tar).root for _ in range(3)}
    assert len(roots) == 1 and next(iter(roots)).parent == cache / "bundles"
    assert list(tmp.iterdir()) == []  # nothing left in the temp directory
    assert [p.name for p in (cache / "bundles").iterdir()] == [next(iter(roots)).name]
    # a cached copy changed since it was unpacked is unpacked afresh, not served
    cached = next(iter(roots))
    (cached / "generation.json").write_text("{}")
    assert load_bundle(tar).generation["n_ctx"] == 512


def test_a_failed_pack_overwrite_keeps_the_old_bundle(tmp_path, gemma_gguf):
    from edge_runtime.bundle import pack_run
    from tests.edge_runtime.conftest import SENTIMENT, make_run_dir

    run = make_run_dir(tmp_path, gemma_gguf, SENTIMENT)
    out = pack_run(run, "router-8gb", tmp_path / "out")
    before = verify(out)["files"]
    with pytest.raises(KeyError, match="no-such-device"):
        pack_run(run, "no-such-device", out, overwrite=True)  # fails after the old code deleted `out`
    assert verify(out)["files"] == before
    again = pack_run(run, "edge-box", out, overwrite=True)
    assert load_bundle(again).manifest["profile"] == "edge-box"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", run.name])
