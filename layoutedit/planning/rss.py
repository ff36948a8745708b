"""The process's peak resident memory on Linux (`VmHWM`), which can be reset.

Writing `5` to `/proc/self/clear_refs` resets the high-water mark to the current resident
size (Linux 4.0+), so the rise of `VmHWM` over a block is the most memory the block added.
Elsewhere these return None and callers skip the check.
"""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def peak_rss() -> int | None:
    """Peak resident bytes since the last reset (None where unknown)."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> int | None:
    """Reset the peak to the current resident size; return that size in bytes (or None)."""
    try:
        _CLEAR.write_text("5")
    except OSError:
        return None
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024
