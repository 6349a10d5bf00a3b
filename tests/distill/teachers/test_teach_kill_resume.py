"""`kill -9` in the middle of `distill teach`, then the same command again: the re-run
sends only the requests that were not finished and the output has every row once."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

from distill.teachers.loopback import FixedLatencyServer


def cached_responses(path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:  # created but the table not there yet
        return 0


def test_kill_9_mid_run_then_resume(make_recipe, tmp_path):
    with FixedLatencyServer(0.25) as srv:
        teacher = {"kind": "openai", "base_url": srv.url, "model": "m", "concurrency": 2, "max_tokens": 8,
                   "price_input_per_m": 1.0, "price_output_per_m": 2.0}
        _, rows, recipe_path = make_recipe(teacher, texts=40)  # eval_size 1: 39 rows to teach
        run_dir = tmp_path / "run"
        cache = run_dir / "teacher-cache.sqlite"
        cmd = [sys.executable, "-m", "distill.cli", "teach", str(recipe_path), "--run-dir", str(run_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while cached_responses(cache) < 8:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.time() < deadline, "the teach stage made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        committed = cached_responses(cache)
        sent_before = srv.requests
        assert 8 <= committed < 39 and not (run_dir / "teach/record.json").exists()

        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        record = json.loads((run_dir / "teach/record.json").read_text())["outputs"]
        assert record["requests"] == 39 - committed and record["from_cache"] == committed
        time.sleep(0.3)  # let requests orphaned by the kill finish on the server
        assert srv.requests >= sent_before + record["requests"]
        assert srv.requests - 39 <= 2  # all paid for once, but the (at most two) in flight at the kill
    labelled = [json.loads(l)["id"] for l in (run_dir / "teach/labelled.jsonl").read_text().splitlines()]
    assert len(labelled) == 39 == len(set(labelled))
    assert cached_responses(cache) == 39
