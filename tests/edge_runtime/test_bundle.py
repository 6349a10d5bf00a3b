"""Bundles: what pack writes, and every tampering refused with the file named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import io

import pytest

from edge_runtime.bundle import BundleError, load_bundle, to_tar, verify, write_manifest


@pytest.fixture()
def copy(tmp_path, receipts_bundle):
    """A copy of the receipts bundle (the model hard-linked back to the original's bytes)."""
    dst = tmp_path / "b"
    shutil.copytree(receipts_bundle, dst, copy_function=shutil.copy2)
    return dst


def test_pack_run_writes_every_part(receipts_bundle):
    b = load_bundle(receipts_bundle)
    files = set(b.manifest["files"])
    assert {"task.json", "schema.json", "grammar.gbnf", "generation.json", "tokenizer.json", "eval.json", "fit.json",
            "ocr.json", "model-q4_k_m.gguf"} <= files  # the first non-f16 artifact
    assert b.task.name == "receipts" and b.generation["n_ctx"] == 1024 and b.generation["max_new_tokens"] == 48
    assert "root ::=" in b.grammar
    assert b.read_json("eval.json")["quantized"]["gguf-q4_k_m"]["headline"] == 0.48
    assert b.read_json("fit.json")["fits"] is True and b.read_json("ocr.json")["engine"] == "rapidocr"
    assert b.read_json("tokenizer.json")["general.architecture"] == "gemma3"


def _tamper_changed(root):
    p = root / "task.json"
    data = bytearray(p.read_bytes())
    data[10] ^= 1
    p.write_bytes(bytes(data))
    return "task.json"


def _tamper_missing(root):
    (root / "fit.json").unlink()
    return "fit.json"


def _tamper_extra(root):
    (root / "payload.sh").write_text("echo hi")
    return "payload.sh"


def _tamper_escape(root):
    m = json.loads((root / "manifest.json").read_text())
    m["files"]["../outside.json"] = {"sha256": "0" * 64, "bytes": 1}
    (root / "manifest.json").write_text(json.dumps(m))
    return "../outside.json"


def _tamper_version(root):
    m = json.loads((root / "manifest.json").read_text())
    m["format_version"] = 99
    (root / "manifest.json").write_text(json.dumps(m))
    return "manifest.json"


def _tamper_symlink(root):
    (root / "eval.json").unlink()
    (root / "eval.json").symlink_to("/etc/hostname")
    return "eval.json"


def _tamper_model_same_size(root):
    p = root / "model-q4_k_m.gguf"
    data = p.read_bytes()
    p.unlink()  # break the hard link; the original stays intact
    p.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    return "model-q4_k_m.gguf"


@pytest.mark.parametrize("tamper", [_tamper_changed, _tamper_missing, _tamper_extra, _tamper_escape, _tamper_version,
                                    _tamper_symlink, _tamper_model_same_size])
def test_tampered_bundle_is_refused_naming_the_file(copy, tamper):
    verify(copy)
    name = tamper(copy)
    with pytest.raises(BundleError) as err:
        load_bundle(copy)
    assert name in str(err.value)


def test_verify_cli_exit_codes(copy):
    ok = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", str(copy)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout
    (copy / "generation.json").write_text("{}")
    bad = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "verify", str(copy)], capture_output=True, text=True)
    assert bad.returncode == 2 and "generation.json" in bad.stderr
    inspect = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "inspect", "--fast", str(copy)], capture_output=True, text=True)
    assert inspect.returncode == 2  # size changed, so even the fast check refuses


def test_tar_round_trip_and_hostile_archive(tmp_path, receipts_bundle, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGE_DISTILL_CACHE", str(cache))
    tar = to_tar(receipts_bundle, tmp_path / "b.tar")
    assert load_bundle(tar).task.name == "receipts"
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as t:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(BundleError, match="escape"):
        load_bundle(evil)
    unpacked = list((cache / "bundles").iterdir())
    assert len(unpacked) == 1  # the good archive's copy; the refused one left nothing behind


def test_manifest_rewritten_after_change_is_accepted(copy):
    """The manifest is the authority: re-signing (what pack does) makes a bundle valid again."""
    _tamper_extra(copy)
    m = json.loads((copy / "manifest.json").read_text())
    write_manifest(copy, {k: v for k, v in m.items() if k not in ("files", "format", "format_version", "created")})
    assert "payload.sh" in verify(copy)["files"]


def test_pack_refuses_to_overwrite(tmp_path, gemma_gguf):
    from edge_runtime.bundle import pack_run
    from tests.edge_runtime.conftest import SENTIMENT, make_run_dir

    run = make_run_dir(tmp_path, gemma_gguf, SENTIMENT)
    out = pack_run(run, "edge-box", tmp_path / "out")
    with pytest.raises(FileExistsError, match="overwrite"):
        pack_run(run, "edge-box", out)
    with pytest.raises(KeyError, match="router-8gb"):
        pack_run(run, "no-such-device", tmp_path / "out2")
