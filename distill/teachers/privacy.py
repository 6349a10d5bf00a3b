"""`teacher.privacy` on the training side: the teach stage, synthesis and eval's teacher
predictor send through `PrivateBackend` when the teacher is remote (its host is not in
`teacher.privacy.local_hosts`).

It wraps a backend's `complete`: the messages' PII is replaced by numbered placeholders
(`edge_runtime.privacy.Masker`, one per request) before the backend sees them, and the
reply's text is restored, so the labels hold the real values. The response cache and the
ledger sit above it and see the unmasked messages: both stay on this machine. Every HTTP call
the backend makes (retries included) is one line of the run's audit log
(`runs/<recipe>/teacher-audit.jsonl`; format in `edge_runtime/privacy.py`).
"""

from __future__ import annotations

import contextvars
import json
from pathlib import Path
from typing import Any

from edge_runtime.privacy import AuditLog, Masker, is_local, usage_of

AUDIT_NAME = "teacher-audit.jsonl"
_masker: contextvars.ContextVar[Masker | None] = contextvars.ContextVar("teacher_masker", default=None)


def audit_path(run_dir: Path) -> Path:
    """Where a run's audit log is: beside the teacher cache, kept across re-runs of a stage."""
    return Path(run_dir) / AUDIT_NAME


def is_remote(cfg) -> bool:
    """Whether any endpoint of an `openai` teacher config is outside its `privacy.local_hosts`."""
    from distill.recipe import teacher_urls

    return cfg.kind == "openai" and any(not is_local(u, cfg.privacy.local_hosts) for u in teacher_urls(cfg))


class PrivateBackend:
    """A backend whose requests are masked and audited (attributes pass through to `inner`)."""

    _OWN = ("inner", "mask", "audit", "stage", "model")

    def __init__(self, inner, *, mask: bool, audit: AuditLog | None, stage: str, model: str):
        for k, v in zip(self._OWN, (inner, mask, audit, stage, model)):
            object.__setattr__(self, k, v)
        if audit is not None and hasattr(inner, "on_sent"):
            inner.on_sent = self._sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:  # e.g. the Labeller's on_unusable hook belongs on the real backend
            setattr(self.inner, name, value)

    def _sent(self, url: str, body: dict[str, Any], status: int, text: str, error: str | None) -> None:
        masker = _masker.get()
        p, c = usage_of(text) if status == 200 else (0, 0)
        # aiohttp's json= sends json.dumps(body): these are the bytes that went out
        self.audit.record(stage=self.stage, endpoint=url, model=self.model, sent=json.dumps(body), status=status,
                          prompt_tokens=p, completion_tokens=c, masked=masker.masked if masker else None, error=error)

    async def complete(self, messages: list[dict[str, str]], sampling: dict[str, Any]):
        masker = Masker() if self.mask else None
        token = _masker.set(masker)
        try:
            comp = await self.inner.complete(masker.mask_messages(messages) if masker else messages, sampling)
        finally:
            _masker.reset(token)
        if masker is not None:
            comp.text, comp.raw, comp.reasoning = masker.restore(comp.text), masker.restore(comp.raw), masker.restore(comp.reasoning)
        return comp

    async def aclose(self) -> None:
        await self.inner.aclose()


def private_backend(cfg, backend, audit_file: Path | None, stage: str):
    """`backend` wrapped for a remote `openai` teacher; as it is for any other."""
    if not is_remote(cfg):
        return backend
    audit = AuditLog(audit_file, content=cfg.privacy.audit_content) if audit_file is not None else None
    return PrivateBackend(backend, mask=cfg.privacy.mask, audit=audit, stage=stage, model=cfg.model)


def wrap_like(template, backend, stage: str):
    """`backend` wrapped the way `template` (a labeller's backend) is: synthesis's own
    backend shares the teach stage's masking and audit log."""
    if not isinstance(template, PrivateBackend):
        return backend
    return PrivateBackend(backend, mask=template.mask, audit=template.audit, stage=stage, model=template.model)
