"""Privacy by construction (issue #18 item 7): what may leave the premises, in what form, and
a record of everything that did.

- `Masker`: replaces each PII value `edge_runtime.pii` detects (emails, Luhn-valid cards,
  mainland resident IDs with a valid check digit, 11-digit mainland mobiles, phone numbers)
  with a numbered placeholder (`[PHONE_1]`, `[EMAIL_2]`, ...) before a prompt is sent, and
  puts the values back into the teacher's answer (`restore`), so an extraction answer still
  holds the real number. One Masker per request: the same value gets the same placeholder
  within it, and nothing is kept afterwards.
- `is_local(url, local_hosts)`: whether a teacher counts as on the premises (no masking, no
  audit, allowed by `local_only`). Entries are host names or IP networks (`10.0.0.0/8`).
- `AuditLog`: JSONL, one line per remote HTTP call: when, which endpoint and model, tokens,
  the sha256 and size of the bytes sent and how many values were masked; the content only
  when asked (`audit_content`). Lines are appended with one `os.write` on an `O_APPEND`
  descriptor, so concurrent writers (threads, processes) never interleave a line.

The training side (`distill.teachers.privacy`) and the runtime's escalation and shadow
sampling (`edge_runtime.router`) use this one module.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge_runtime.pii import ORDER, replace_pii

# The defaults of `teacher.privacy` (distill/recipe.py) and of `serve`'s flags: one place.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULTS = {
    "mask": True,  # nothing leaves unmasked unless the operator says so (DESIGN.md)
    "local_only": False,  # most recipes use an API teacher; regulated data sets turn it on
    "local_hosts": LOOPBACK_HOSTS,  # only loopback is certainly on the premises; list the rest
    "audit_content": False,  # the audit proves what was sent by hash, without becoming a PII store
}
TOKENS = {"email": "EMAIL", "card": "CARD", "cn_id": "ID", "cn_mobile": "PHONE", "phone": "PHONE"}
_PLACEHOLDER = re.compile(r"\[?\b(EMAIL|CARD|ID|PHONE)_(\d+)\b\]?")


class Masker:
    """Reversible masking for one request."""

    def __init__(self, kinds: tuple[str, ...] = ORDER):
        self.kinds = kinds
        self.values: dict[str, str] = {}  # placeholder -> value
        self._by_value: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def _placeholder(self, kind: str, value: str) -> str:
        if value not in self._by_value:
            token = TOKENS[kind]
            self._counts[token] = self._counts.get(token, 0) + 1
            ph = f"[{token}_{self._counts[token]}]"
            self._by_value[value], self.values[ph] = ph, value
        return self._by_value[value]

    def mask(self, text: str) -> str:
        return replace_pii(text, self._placeholder, self.kinds)

    def mask_messages(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**m, "content": self.mask(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]

    def restore(self, text: str) -> str:
        """`text` with each placeholder this Masker made (with or without its brackets) back
        to its value; other text, and placeholders it did not make, are left alone."""
        if not self.values or not text:
            return text

        def repl(m: re.Match) -> str:
            return self.values.get(f"[{m.group(1)}_{m.group(2)}]", m.group(0))

        return _PLACEHOLDER.sub(repl, text)

    def restore_json(self, value: Any) -> Any:
        """`restore` applied to every string in a parsed answer."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self.restore_json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.restore_json(v) for k, v in value.items()}
        return value

    @property
    def masked(self) -> dict[str, int]:
        """How many distinct values of each kind were masked (for the audit log)."""
        return dict(self._counts)


def is_local(url: str, local_hosts: tuple[str, ...] | list[str] = LOOPBACK_HOSTS) -> bool:
    """Whether `url`'s host is one of `local_hosts` (names, addresses or networks)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        addr = None
    for entry in local_hosts:
        entry = entry.strip().lower()
        if host == entry.strip("[]"):
            return True
        if addr is not None and "/" in entry:
            try:
                if addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def check_local_hosts(entries: list[str]) -> list[str]:
    """Problems with a `local_hosts` list (an unparsable network), for validation."""
    problems = []
    for e in entries:
        if "/" in e:
            try:
                ipaddress.ip_network(e, strict=False)
            except ValueError as exc:
                problems.append(f"{e!r} is not an IP network ({exc}); write a host name, an address or e.g. 10.0.0.0/8")
    return problems


def strip_userinfo(url: str) -> str:
    """`url` without a `user:pass@` part (never written to disk or echoed)."""
    from urllib.parse import urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def sha256_of(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def usage_of(body: str) -> tuple[int, int]:
    """(prompt, completion) tokens a chat completion reports, or (0, 0)."""
    try:
        usage = json.loads(body).get("usage") or {}
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    except (ValueError, TypeError, AttributeError):
        return 0, 0


class AuditLog:
    """Append-only JSONL of remote calls (format: the module docstring). Thread-safe."""

    def __init__(self, path: str | Path, content: bool = DEFAULTS["audit_content"]):
        self.path, self.content = Path(path), content
        if self.path.is_dir():
            raise ValueError(f"audit log {self.path} is a directory; give a file path such as {self.path / 'audit.jsonl'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._lock = threading.Lock()
        self.lines = 0

    def record(self, *, stage: str, endpoint: str, model: str, sent: bytes | str, status: int,
               prompt_tokens: int = 0, completion_tokens: int = 0, masked: dict[str, int] | None = None,
               error: str | None = None) -> None:
        data = sent.encode("utf-8") if isinstance(sent, str) else sent
        line: dict[str, Any] = {
            "ts": round(time.time(), 3), "stage": stage, "endpoint": strip_userinfo(endpoint), "model": model,
            "status": status, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "sent_sha256": sha256_of(data), "sent_bytes": len(data), "masked": masked or {},
        }
        if error:
            line["error"] = error
        if self.content:
            line["content"] = data.decode("utf-8", errors="replace")
        raw = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            os.write(self._fd, raw)
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """The audit log's lines (a torn last line, after a power cut, is skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out
