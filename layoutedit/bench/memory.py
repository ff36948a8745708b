"""Peak memory of a stretch of work: resident set size, and CUDA memory when torch uses it.

On Linux the process's peak RSS (VmHWM) can be reset by writing 5 to /proc/self/clear_refs,
so each variant gets its own peak; elsewhere the peak is the process's lifetime peak
(`resource.getrusage`), which only grows, and `PeakMemory.resettable` says so.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _hwm_mb() -> float | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def _rusage_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _torch_cuda() -> object | None:
    torch = sys.modules.get("torch")  # never import torch just to measure (paste variant)
    if torch is None:
        return None
    cuda = getattr(torch, "cuda", None)
    return cuda if cuda is not None and cuda.is_available() else None


class PeakMemory:
    """Measure peak memory from `start()` to `stop()`, in MiB."""

    def __init__(self) -> None:
        self.resettable = False
        self.rss_mb = 0.0
        self.cuda_mb: float | None = None

    def start(self) -> None:
        """Reset the peaks where the platform allows it."""
        try:
            _CLEAR_REFS.write_text("5")
            self.resettable = _hwm_mb() is not None
        except OSError:
            self.resettable = False
        cuda = _torch_cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()  # type: ignore[attr-defined]

    def stop(self) -> None:
        """Read the peaks (RSS of the whole process; CUDA allocator peak when in use)."""
        hwm = _hwm_mb() if self.resettable else None
        self.rss_mb = hwm if hwm is not None else _rusage_mb()
        cuda = _torch_cuda()
        if cuda is not None:
            self.cuda_mb = cuda.max_memory_allocated() / 2**20  # type: ignore[attr-defined]
