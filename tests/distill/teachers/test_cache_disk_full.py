"""Issue #15 bug 9: a full disk while the teacher cache commits. The real error reaches the
user (not SQLite's "no transaction is active" from a ROLLBACK after SQLite rolled back by
itself), naming what was kept and how to resume, and the paid answer is not lost."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from distill.teachers.cache import CacheWriteError, ResponseCache


def put(cache: ResponseCache, i: int, size: int = 200) -> str:
    key = f"k{i:04d}"
    cache.put(key, "m", {"messages": [{"role": "user", "content": f"q{i}"}]},
              {"text": "x" * size, "i": i}, (10, 5, 0), 0.001, "run1")
    return key


def test_a_full_database_keeps_the_paid_answer_and_says_so(tmp_path):
    """SQLite's own size limit (PRAGMA max_page_count) raises the same SQLITE_FULL a full disk does."""
    cache = ResponseCache(tmp_path / "teacher-cache.sqlite")
    for i in range(3):
        put(cache, i)
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(CacheWriteError) as err:
        put(cache, 3, size=100_000)
    msg = str(err.value)
    assert "full" in msg and "no transaction is active" not in msg, msg
    assert "teacher-cache.sqlite.pending.jsonl" in msg and "run the same command again" in msg
    assert "3 answers stored before it are safe" in msg
    assert cache.get("k0003") is None
    cache.close()

    again = ResponseCache(tmp_path / "teacher-cache.sqlite")  # space again (a fresh connection has no page cap)
    assert again.recovered == 1
    assert again.get("k0003")["i"] == 3 and len(again) == 4
    assert again.ledger_totals() == {"requests": 4, "prompt_tokens": 40, "completion_tokens": 20,
                                     "cached_tokens": 0, "cost_usd": pytest.approx(0.004)}
    again.close()
    third = ResponseCache(tmp_path / "teacher-cache.sqlite")  # replayed once, never twice
    assert third.recovered == 0 and third.ledger_totals()["requests"] == 4
    third.close()


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 160 KiB filesystem (tmpfs); skipped where mounting is not allowed."""
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_really_full_disk_names_the_real_error_and_resumes(tiny_disk):
    cache = ResponseCache(tiny_disk / "teacher-cache.sqlite")
    stored = []
    with pytest.raises(CacheWriteError) as err:
        for i in range(200):
            stored.append(put(cache, i, size=6000))
    msg = str(err.value)
    assert "full" in msg.lower() and "no transaction is active" not in msg, msg
    assert "run the same command again" in msg
    failed = f"k{len(stored):04d}"
    cache.close()
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)  # space freed
    again = ResponseCache(tiny_disk / "teacher-cache.sqlite")
    assert stored and all(again.get(k) is not None for k in stored)
    if "it was kept in" in msg:
        assert again.recovered == 1 and again.get(failed) is not None
    else:
        assert "this answer is lost" in msg
    again.close()
