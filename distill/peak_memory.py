"""Peak memory while a block runs: what training records next to its estimate and what
evaluation records per predictor. No torch import unless the device is CUDA.

On CPU, with `hwm` (training's default), Linux lets a process reset its resident-set
high-water mark (`/proc/self/clear_refs` <- 5) and read it back (`VmHWM`), which catches
short-lived peaks that sampling would miss; where the reset is refused, and with
`hwm=False`, the resident set is sampled every `interval_s`. On CUDA: the allocator's peak.
"""

from __future__ import annotations

import threading


def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _vm_hwm() -> int | None:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class PeakMemory:
    """After the block: `start` (resident bytes on entry), `peak` (the process's peak resident
    bytes, CPU), `peak_bytes` (the peak above `baseline`, which defaults to `start`; on CUDA the
    allocator's peak) and `method` (how it was measured)."""

    def __init__(self, device: str = "cpu", baseline: int | None = None, *, hwm: bool = True,
                 interval_s: float = 0.01):
        self.device, self.baseline, self.hwm, self.interval = device, baseline, hwm, interval_s
        self.start = self.peak = self.peak_bytes = 0
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _cuda(self) -> bool:
        return self.device.startswith("cuda")

    def __enter__(self) -> "PeakMemory":
        if self._cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self.start = self.peak = rss_bytes()
        if self.baseline is None:
            self.baseline = self.start
        if self.hwm:
            try:
                with open("/proc/self/clear_refs", "w") as fh:
                    fh.write("5")
                self.method = "VmHWM (reset via /proc/self/clear_refs) minus RSS before model load"
                return self
            except OSError:
                pass
        self.method = f"sampled RSS every {self.interval * 1000:.0f} ms minus RSS before model load"
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def read(self) -> int:
        """The peak so far above `baseline` (CUDA: the allocator's peak)."""
        if self._cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        hwm = _vm_hwm() if self._thread is None else None
        if hwm is not None:
            self.peak = max(self.peak, hwm)
            return hwm - int(self.baseline or 0)
        self.peak = max(self.peak, rss_bytes())
        return self.peak - int(self.baseline or 0)

    def __exit__(self, *exc) -> None:
        self.peak_bytes = self.read()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        if not self._cuda:
            self.peak = max(self.peak, rss_bytes())
