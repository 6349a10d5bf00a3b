"""The request log: input modes, kill -9 durability, rotation and the disk cap, a full queue
that drops instead of blocking, torn tails, one writer per directory, versioned reading."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_runtime.request_log import (FORMAT_VERSION, LogFormatError, LogSettings, RequestLog, log_files, read_log,
                                      render)

ROOT = Path(__file__).resolve().parents[2]


def _entry(i: int, text: str = "hello") -> dict:
    return {"id": f"task-{i:06d}", "task": "t", "input": text, "answer": {"label": "positive"}, "confidence": 0.9}


def test_input_modes_full_masked_hash():
    e = {"id": "task-1", "input": "mail jane@example.com or 13812345678", "answer": {"who": "jane@example.com"},
         "teacher_answer": {"who": "jane@example.com"}}
    full, masked, hashed = (render(e, m) for m in ("full", "masked", "hash"))
    assert full["input"] == e["input"] and full["answer"] == e["answer"] and full["v"] == FORMAT_VERSION
    assert masked["input"] == "mail [EMAIL] or [PHONE]" and masked["answer"] == {"who": "[EMAIL]"}
    assert "jane" not in json.dumps(masked) and "13812345678" not in json.dumps(masked)
    assert "input" not in hashed and "jane" not in json.dumps(hashed) and hashed["input_mode"] == "hash"
    assert full["input_sha256"] == masked["input_sha256"] == hashed["input_sha256"] and len(full["input_sha256"]) == 64
    lines = render({"input": ["a 4111 1111 1111 1111", "b"]}, "masked")
    assert lines["input"] == ["a [CARD]", "b"] and lines["input_chars"] == len("a 4111 1111 1111 1111\nb")


def test_records_are_written_in_order_and_read_back(tmp_path):
    log = RequestLog(LogSettings(tmp_path, inputs="full", flush_interval_s=0.05))
    for i in range(50):
        assert log.record(_entry(i))
    log.close()
    recs = list(read_log(tmp_path))
    assert [r["id"] for r in recs] == [f"task-{i:06d}" for i in range(50)] and log.written == 50


CHILD = r"""
import sys, time
from edge_runtime.request_log import LogSettings, RequestLog
log = RequestLog(LogSettings(sys.argv[1], inputs="full", flush_interval_s=0.01, batch_size=7, max_file_bytes=64 * 1024,
                             max_total_bytes=10 * 2**20))
i = 0
while True:
    for _ in range(5):
        log.record({"id": f"task-{i:06d}", "input": "x" * (i % 300), "answer": {"label": "positive"}})
        i += 1
    done = log.written
    while log.written == done:
        time.sleep(0.001)
    print(log.written, flush=True)  # acknowledged: on disk
"""


def test_kill_9_loses_at_most_the_unwritten_batch_and_never_tears_a_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked = 0
    try:
        deadline = time.time() + 60
        while acked < 400 and time.time() < deadline:
            acked = int(proc.stdout.readline() or acked)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert acked >= 400
    assert len(log_files(tmp_path)) > 1  # it rotated while running
    for path in log_files(tmp_path):
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"torn line in {path.name}"
        for line in data.splitlines():
            json.loads(line)
    ids = [r["id"] for r in read_log(tmp_path)]
    assert ids == [f"task-{i:06d}" for i in range(len(ids))]  # nothing lost in between
    assert len(ids) >= acked  # everything acknowledged as written survived the kill


def test_rotation_and_disk_cap_hold(tmp_path):
    s = LogSettings(tmp_path, inputs="full", max_file_bytes=4096, max_total_bytes=16384, flush_interval_s=0.01)
    log = RequestLog(s)
    for i in range(2000):
        while not log.record(_entry(i, "y" * 40)):
            time.sleep(0.001)
    log.close()
    files = log_files(tmp_path)
    sizes = [p.stat().st_size for p in files]
    assert len(files) >= 3 and log.deleted_files > 0
    assert max(sizes) <= s.max_file_bytes and sum(sizes) <= s.max_total_bytes, sizes
    ids = [int(r["id"][5:]) for r in read_log(tmp_path)]
    assert ids[-1] == 1999 and ids == list(range(ids[0], 2000))  # the newest kept, oldest files deleted whole


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    log = RequestLog(LogSettings(tmp_path, queue_size=4, flush_interval_s=0.01))
    gate = threading.Event()
    log._write_batch = lambda batch: gate.wait()  # a disk that hangs
    start = time.perf_counter()
    results = [log.record(_entry(i)) for i in range(50)]
    assert time.perf_counter() - start < 0.5
    assert results.count(False) >= 40 and log.dropped == results.count(False)
    gate.set()
    log.close()


def test_a_torn_tail_is_cut_when_the_writer_starts(tmp_path):
    good = json.dumps({"v": 1, "id": "task-a"}) + "\n"
    (tmp_path / "requests-00000003.jsonl").write_text(good + '{"v": 1, "id": "task-b", "inp')
    assert [r["id"] for r in read_log(tmp_path)] == ["task-a"]  # the reader skips it
    log = RequestLog(LogSettings(tmp_path, inputs="hash", flush_interval_s=0.01))
    log.record(_entry(7))
    log.close()
    assert [r["id"] for r in read_log(tmp_path)] == ["task-a", "task-000007"]


def test_one_writer_per_directory_and_clear_settings_errors(tmp_path):
    log = RequestLog(LogSettings(tmp_path))
    with pytest.raises(ValueError, match="another edge-runtime serve"):
        RequestLog(LogSettings(tmp_path))
    log.close()
    RequestLog(LogSettings(tmp_path)).close()  # free again once closed
    with pytest.raises(ValueError, match="--log-inputs 'raw': choose one of full, masked, hash"):
        LogSettings(tmp_path, inputs="raw")
    with pytest.raises(ValueError, match="--log-max-total-mb"):
        LogSettings(tmp_path, max_file_bytes=8192, max_total_bytes=4096)


def test_reader_refuses_an_unknown_version(tmp_path):
    (tmp_path / "requests-00000001.jsonl").write_text(json.dumps({"v": 99}) + "\n")
    with pytest.raises(LogFormatError, match="version 99.*upgrade"):
        list(read_log(tmp_path))
