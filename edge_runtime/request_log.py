"""The device's request log: one JSON line per task request, written off the request path.

Turned on by `edge-runtime serve BUNDLE --log-dir DIR [--log-inputs full|masked|hash]`.
`distill` reads it as teacher data (escalated rows carry the teacher's answer) and
`edge-runtime report DIR` summarises it.

Format `edge-request-log`, version 1
-----------------------------------
Files: `DIR/requests-<8-digit sequence>.jsonl`, UTF-8, one JSON object per line, oldest file
first by sequence number, lines in the order requests finished. A file is closed and the next
one started when it would pass `max_file_bytes`; the oldest files are deleted when all of them
together pass `max_total_bytes`. A reader must skip a last line without its newline (the
writer never leaves one, but a power cut may) and refuse a `v` it does not know.

| key | type | meaning |
|---|---|---|
| `v` | int | format version (1) |
| `ts` | str | when the request finished, UTC, ISO 8601 with milliseconds |
| `id` | str | the request id the client got in the response (`task-...`) |
| `task` | str | the task name |
| `bundle` | str | sha256 of the bundle's manifest (which student answered) |
| `input_mode` | str | `full`, `masked` or `hash`: what `input` holds |
| `input` | str or list of str | the input (`full`), or its PII-masked form (`masked`, see `edge_runtime.pii`); absent with `hash` |
| `input_sha256` | str | sha256 of the input text (OCR lines joined by newlines), always present: dedup and joins |
| `input_chars` | int | length of the input text in characters |
| `answer` | object or null | the answer returned (the teacher's when escalated) |
| `source` | str | `student`, `teacher` or `cache` |
| `confidence` | float | the student's confidence |
| `valid` | bool | the student's answer was schema-valid |
| `escalated` | bool | the teacher was asked for this request (false for a cache hit) |
| `student_answer` | object or null | the student's answer |
| `teacher_answer` | object or null | the teacher's answer when `answer` is the teacher's (escalated now, or a cached escalation), or a shadow sample's teacher answer, else null |
| `shadow` | object | shadow-sampled requests only (`edge_runtime.shadow`): `sample` (`random`/`low_confidence`), `agree` (bool), `cost_usd`; or `error` |
| `escalation_error` | str | why an escalation failed (absent when none) |
| `escalation_skipped` | str | why a low-confidence answer was not escalated: `budget` (absent when it was) |
| `cached` | bool | answered from the answer cache |
| `latency_s` | float | model time for the answer (0 for a cache hit) |
| `total_s` | float | the request's wall time in the handler |
| `prompt_tokens`, `completion_tokens` | int | the student's token counts |
| `cost_usd` | float | teacher cost of this request |

With `masked` and `hash` the string values of the answers are PII-masked as well (an
extraction answer copies text from the input). `hash` keeps only a sha256 of the input: short
inputs (a phone number) can be found again by hashing guesses, so prefer `masked` for those.
No request header is ever logged, so neither is an API key.

Durability: the writer thread takes what the request handlers queued (a bounded queue: a full
queue drops the record and counts it, it never blocks or fails a request), writes each batch
with one `os.write` on an `O_APPEND` descriptor and flushes it to disk. A crash or `kill -9`
loses at most the batch being written; a torn last line (power cut) is cut off when the writer
starts again. One server per directory (a lock file refuses a second).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

FORMAT = "edge-request-log"
FORMAT_VERSION = 1
INPUT_MODES = ("full", "masked", "hash")
FILE_RE = re.compile(r"^requests-(\d{8})\.jsonl$")
LOCK_FILE = ".lock"
DEFAULTS = {"inputs": "masked", "max_file_bytes": 16 * 2**20, "max_total_bytes": 256 * 2**20,
            "queue_size": 4096, "batch_size": 256, "flush_interval_s": 0.5}

log = logging.getLogger("edge_runtime.request_log")


class LogFormatError(ValueError):
    """A log line this reader cannot read; the message names the file and the fix."""


@dataclass
class LogSettings:
    directory: Path
    inputs: str = DEFAULTS["inputs"]
    max_file_bytes: int = DEFAULTS["max_file_bytes"]
    max_total_bytes: int = DEFAULTS["max_total_bytes"]
    queue_size: int = DEFAULTS["queue_size"]
    batch_size: int = DEFAULTS["batch_size"]
    flush_interval_s: float = DEFAULTS["flush_interval_s"]
    fsync: bool = True

    def __post_init__(self):
        self.directory = Path(self.directory)
        if self.inputs not in INPUT_MODES:
            raise ValueError(f"--log-inputs {self.inputs!r}: choose one of {', '.join(INPUT_MODES)}")
        if self.max_file_bytes < 1024:
            raise ValueError(f"--log-max-file-mb: a log file must hold at least 1 KiB (got {self.max_file_bytes} bytes)")
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError(f"--log-max-total-mb ({self.max_total_bytes} bytes) must be at least one file's size "
                             f"(--log-max-file-mb, {self.max_file_bytes} bytes)")


def input_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _mask_values(value: Any) -> Any:
    from edge_runtime.pii import mask_pii

    if isinstance(value, str):
        return mask_pii(value)
    if isinstance(value, list):
        return [_mask_values(v) for v in value]
    if isinstance(value, dict):
        return {k: _mask_values(v) for k, v in value.items()}
    return value


def render(entry: dict[str, Any], mode: str) -> dict[str, Any]:
    """The log record of one request as queued by the server: `input` (str or list) is
    replaced per `mode`, answers masked unless `full`; `v` and `ts` are added."""
    out = {"v": FORMAT_VERSION, "ts": entry.get("ts") or _now(), **{k: v for k, v in entry.items() if k != "ts"}}
    raw = out.pop("input", "")
    text = "\n".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    out["input_mode"] = mode
    if mode == "full":
        out["input"] = raw
    elif mode == "masked":
        out["input"] = _mask_values(raw)
    out["input_sha256"] = input_sha256(text)
    out["input_chars"] = len(text)
    if mode != "full":
        for key in ("answer", "student_answer", "teacher_answer"):
            if key in out:
                out[key] = _mask_values(out[key])
    return out


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def log_files(directory: Path) -> list[Path]:
    """The log's files, oldest first."""
    found = [(int(m.group(1)), p) for p in Path(directory).iterdir() if (m := FILE_RE.match(p.name))]
    return [p for _, p in sorted(found)]


class RequestLog:
    """The writer: `record(entry)` from the request path (never blocks, never raises), a
    background thread that writes batches, rotates and keeps the disk cap."""

    def __init__(self, settings: LogSettings):
        self.settings = s = settings
        try:
            s.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fh = open(s.directory / LOCK_FILE, "a")
        except OSError as exc:
            raise ValueError(f"--log-dir {s.directory}: cannot write there ({exc}); give a writable directory") from exc
        import fcntl

        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_fh.close()
            raise ValueError(f"--log-dir {s.directory}: another edge-runtime serve is writing this log; "
                             f"give each server its own --log-dir") from None
        self.queue: queue.Queue = queue.Queue(maxsize=s.queue_size)
        self.written = self.dropped = self.failed_batches = self.deleted_files = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._open_latest()
        self._stop = object()
        self._thread = threading.Thread(target=self._run, name="edge-request-log", daemon=True)
        self._thread.start()

    # ---- the request path ----
    def record(self, entry: dict[str, Any]) -> bool:
        """Queue one request's record; False (and counted in `dropped`) when the queue is full."""
        try:
            self.queue.put_nowait(entry)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer and release the directory."""
        if not self._thread.is_alive():
            return
        self.queue.put(self._stop)
        self._thread.join(timeout_s)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._lock_fh.close()

    # ---- the writer thread ----
    def _run(self) -> None:
        s = self.settings
        while True:
            try:
                first = self.queue.get(timeout=s.flush_interval_s)
            except queue.Empty:
                continue
            batch, stop = [], first is self._stop
            if not stop:
                batch.append(first)
            while not stop and len(batch) < s.batch_size:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is self._stop:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                try:
                    self._write_batch(batch)
                except Exception:  # the writer never dies: a later batch may succeed
                    self.failed_batches += 1
                    log.exception("request log: batch of %d records lost", len(batch))
            if stop:
                return

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        lines = []
        for entry in batch:
            try:
                lines.append(json.dumps(render(entry, self.settings.inputs), ensure_ascii=False, default=str) + "\n")
            except Exception:  # one bad record never costs the others
                log.exception("request log: could not render a record; skipped")
        if not lines:
            return
        try:
            chunk: list[bytes] = []
            size = 0
            for line in (ln.encode("utf-8") for ln in lines):
                if chunk and self._size + size + len(line) > self.settings.max_file_bytes:
                    self._append(b"".join(chunk))
                    chunk, size = [], 0
                if not chunk and self._size and self._size + len(line) > self.settings.max_file_bytes:
                    self._rotate()  # a file never passes max_file_bytes (unless one line is larger)
                chunk.append(line)
                size += len(line)
            self._append(b"".join(chunk))
            if self.settings.fsync:
                os.fsync(self._fd)
            self.written += len(lines)
        except OSError as exc:
            self.failed_batches += 1
            log.warning("request log: could not write %d records to %s: %s", len(lines), self._path, exc)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)

    # ---- files ----
    def _open(self, path: Path) -> None:
        if self._fd is not None:
            if self.settings.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._path, self._size = path, os.fstat(self._fd).st_size

    def _open_latest(self) -> None:
        files = log_files(self.settings.directory)
        if not files:
            self._open(self.settings.directory / "requests-00000001.jsonl")
            return
        _cut_torn_tail(files[-1])
        self._open(files[-1])
        if self._size >= self.settings.max_file_bytes:
            self._rotate()

    def _rotate(self) -> None:
        seq = int(FILE_RE.match(self._path.name).group(1)) + 1
        self._open(self.settings.directory / f"requests-{seq:08d}.jsonl")
        self._enforce_cap()

    def _enforce_cap(self) -> None:
        """Delete the oldest files until the closed ones leave room for the open one to fill."""
        files = [p for p in log_files(self.settings.directory) if p != self._path]
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values())
        budget = self.settings.max_total_bytes - self.settings.max_file_bytes
        for old in files:
            if total <= budget:
                break
            old.unlink(missing_ok=True)
            total -= sizes[old]
            self.deleted_files += 1


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a write cut by a power loss)."""
    size = path.stat().st_size
    if not size:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        chunk, pos = 1 << 16, size
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            cut = fh.read(pos - start).rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


# ---- reading -------------------------------------------------------------------------
def read_log(directory: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of a log directory, oldest first. A torn last line is skipped; a record
    of an unknown version is refused with the file and line named."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such log directory (the server writes one with `serve --log-dir DIR`)")
    for path in log_files(directory):
        with open(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.endswith(b"\n"):
                    break  # torn tail
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise LogFormatError(f"{path}:{n}: not a JSON line ({exc})") from exc
                if not isinstance(rec, dict) or rec.get("v") != FORMAT_VERSION:
                    raise LogFormatError(f"{path}:{n}: {FORMAT} version {rec.get('v') if isinstance(rec, dict) else None!r}; "
                                         f"this reader knows v{FORMAT_VERSION}: upgrade edge-distill")
                yield rec


def teacher_answer(record: dict[str, Any]) -> dict[str, Any] | None:
    """The teacher's answer a record carries, the label to train and compare on: the
    escalation's (`teacher_answer`), else a shadow sample's (`shadow.teacher_answer`); or None.
    Never the student's: that would only teach and reward the student's own mistakes."""
    if isinstance(record.get("teacher_answer"), dict):
        return record["teacher_answer"]
    shadow = record.get("shadow")
    if isinstance(shadow, dict):
        for key in ("teacher_answer", "answer"):
            if isinstance(shadow.get(key), dict):
                return shadow[key]
    return None
