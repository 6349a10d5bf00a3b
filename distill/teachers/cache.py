"""A content-addressed response cache in SQLite (WAL): never pay twice.

The key is a hash of the model, the messages and the sampling settings (the logical
request, not how it was transported). Each paid response is committed together with its
ledger entry the moment it arrives, so `kill -9` loses at most the requests in flight and a
re-run finds every finished one here. WAL with synchronous=NORMAL survives a killed process
(the OS has the pages); it trades only the last commits on power loss for throughput.

A paid answer is first appended to a side file, `<cache>.pending.jsonl`, then committed, and
the side file emptied. When the commit fails (a full disk: SQLITE_FULL), the answer stays in
the side file, the stage stops with `CacheWriteError` naming the real error, what was kept and
how to resume, and the next open of the cache adds the kept answers (with their ledger
entries) before anything is looked up: a re-run pays nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import os
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
CREATE INDEX IF NOT EXISTS ledger_key ON ledger (key);
"""


class CacheWriteError(RuntimeError):
    """A paid answer could not be committed to the cache (a full disk, a read-only file)."""


def request_key(model: str, messages: list[dict[str, Any]], sampling: dict[str, Any], endpoint: str | None = None) -> str:
    """The cache key of a logical request. `endpoint` (an API teacher's base URL, without
    credentials) keeps two providers serving the same model name apart. Answers cached before it
    was added (keys without an endpoint) are still found: the teacher looks them up by the old
    key when the new one misses, so nothing paid for is paid again."""
    data: dict[str, Any] = {"model": model, "messages": messages, "sampling": sampling}
    if endpoint:
        data["endpoint"] = endpoint
    payload = json.dumps(data, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ResponseCache:
    """One SQLite file shared by every run of a recipe. Thread-safe (one connection, a lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.pending = self.path.with_name(self.path.name + ".pending.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.recovered = self._replay_pending()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, request: dict[str, Any], response: dict[str, Any],
            usage: tuple[int, int, int], cost_usd: float, run: str) -> None:
        """Store a paid response and its ledger entry in one transaction, after appending them
        to the side file; CacheWriteError when the commit fails (the answer then stays there)."""
        entry = {"key": key, "model": model, "request": request, "response": response, "usage": list(usage),
                 "cost_usd": cost_usd, "run": run, "created": time.time()}
        with self._lock:
            try:
                with open(self.pending, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, ensure_ascii=False) + "\n")
                kept = f"it was kept in {self.pending} and is added to the cache the next time the cache is opened"
            except OSError as exc:
                kept = f"it could not be kept in {self.pending} either ({exc.strerror or exc}): this answer is lost"
            try:
                self._commit([entry])
            except sqlite3.Error as exc:
                done = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] if _readable(self._db) else "?"
                raise CacheWriteError(
                    f"teacher cache {self.path}: could not store a paid answer ({exc.__class__.__name__}: {exc}); "
                    f"{kept}. The {done} answers stored before it are safe. Free disk space (or make the file "
                    f"writable) and run the same command again: answers already paid for are not paid again"
                ) from exc
            try:
                os.truncate(self.pending, 0)  # committed: the side file holds only what failed
            except OSError:
                pass  # replayed (and ignored as duplicates) at the next open

    def _commit(self, entries: list[dict[str, Any]]) -> None:
        """One transaction; a failed one is rolled back only if SQLite has not done so already
        (after SQLITE_FULL it has: ROLLBACK would fail with "no transaction is active" and hide
        the real error)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for e in entries:
                self._db.execute(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?)",
                    (e["key"], e["model"], json.dumps(e["request"], ensure_ascii=False),
                     json.dumps(e["response"], ensure_ascii=False), e["created"]),
                )
                self._db.execute(
                    "INSERT INTO ledger (key, model, prompt_tokens, completion_tokens, cached_tokens, cost_usd, run, created)"
                    " SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS"
                    " (SELECT 1 FROM ledger WHERE key = ? AND run = ? AND created = ?)",
                    (e["key"], e["model"], *e["usage"], e["cost_usd"], e["run"], e["created"],
                     e["key"], e["run"], e["created"]),
                )
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one to report
            raise

    def _replay_pending(self) -> int:
        """Answers a failed commit left in the side file, added now; how many there were."""
        if not self.pending.exists() or self.pending.stat().st_size == 0:
            return 0
        entries = []
        for line in self.pending.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill mid-append: its answer was never committed, and is asked again
        try:
            self._commit(entries)
        except sqlite3.Error as exc:
            raise CacheWriteError(
                f"teacher cache {self.path}: could not add the {len(entries)} paid answers kept in {self.pending} "
                f"({exc.__class__.__name__}: {exc}); they stay there. Free disk space and run the command again"
            ) from exc
        os.truncate(self.pending, 0)
        return len(entries)

    def record_cost(self, key: str, model: str, usage: tuple[int, int, int], cost_usd: float, run: str) -> None:
        """A ledger entry without an answer: a reply that was paid for but unusable (a 200 with a
        broken body). Keyed `unusable:<request key>`, so totals include it and lookups never find it."""
        entry = {"key": f"unusable:{key}", "model": model, "request": {}, "response": {}, "usage": list(usage),
                 "cost_usd": cost_usd, "run": run, "created": time.time()}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO ledger (key, model, prompt_tokens, completion_tokens, cached_tokens, cost_usd, run, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (entry["key"], model, *usage, cost_usd, run, entry["created"]))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
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


def _readable(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT 1")
        return True
    except sqlite3.Error:
        return False
