"""A content-addressed response cache in SQLite (WAL): never pay twice.

The key is a hash of the model, the messages and the sampling settings (the logical
request, not how it was transported). Each paid response is committed together with its
ledger entry the moment it arrives, so `kill -9` loses at most the requests in flight and a
re-run finds every finished one here. WAL with synchronous=NORMAL survives a killed process
(the OS has the pages); it trades only the last commits on power loss for throughput.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL,
    response TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, run TEXT NOT NULL, created REAL NOT NULL);
"""


def request_key(model: str, messages: list[dict[str, Any]], sampling: dict[str, Any]) -> str:
    payload = json.dumps({"model": model, "messages": messages, "sampling": sampling}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """One SQLite file shared by every run of a recipe. Thread-safe (one connection, a lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, request: dict[str, Any], response: dict[str, Any],
            usage: tuple[int, int, int], cost_usd: float, run: str) -> None:
        """Store a paid response and its ledger entry in one transaction."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?)",
                    (key, model, json.dumps(request, ensure_ascii=False), json.dumps(response, ensure_ascii=False), now),
                )
                self._db.execute(
                    "INSERT INTO ledger (key, model, prompt_tokens, completion_tokens, cached_tokens, cost_usd, run, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, model, *usage, cost_usd, run, now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def ledger_totals(self, run: str | None = None) -> dict[str, float]:
        """Requests, tokens and cost paid (for one run id, or ever)."""
        where, args = ("WHERE run = ?", (run,)) if run else ("", ())
        with self._lock:
            n, p, c, k, cost = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
                f" COALESCE(SUM(cached_tokens),0), COALESCE(SUM(cost_usd),0) FROM ledger {where}", args
            ).fetchone()
        return {"requests": n, "prompt_tokens": p, "completion_tokens": c, "cached_tokens": k, "cost_usd": cost}

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
