"""Parse and print the durations, sizes and times of `layoutedit cache` options and tables.

Sizes are parsed by pydantic's `ByteSize` (kB, MB, GB decimal; KiB, MiB, GiB binary);
durations by the small pattern below, as pydantic has no unit-suffixed duration type.
"""

from __future__ import annotations

import math
import re
import time

from pydantic import ByteSize, TypeAdapter, ValidationError

from layoutedit.errors import UserError

_DURATION_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_BYTE_SIZE = TypeAdapter(ByteSize)
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90s`, `45m`, `12h`, `30d`, `2w` (a unit is required)."""
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _DURATION_UNITS:
        raise UserError(
            f"bad duration {text!r}: use a number and a unit, e.g. 12h or 30d (units s, m, h, d, w)"
        )
    seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    if not math.isfinite(seconds):
        raise UserError(f"bad duration {text!r}: too long")
    return seconds


def parse_size(text: str) -> int:
    """Bytes in a size such as `500MB`, `5GB`, `2GiB` or `1000000` (kB, MB, GB are decimal)."""
    try:
        return int(_BYTE_SIZE.validate_python(text.strip()))
    except ValidationError:
        raise UserError(f"bad size {text!r}: use a number and a unit, e.g. 500MB or 5GB") from None


def format_size(n: int) -> str:
    """`5.2 MB`-style size (decimal units, like `parse_size`)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_time(timestamp: float, *, date_only: bool = False) -> str:
    """Local `YYYY-MM-DD HH:MM` (or `YYYY-MM-DD`) of a time in seconds since the epoch."""
    return time.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M", time.localtime(timestamp))


def format_age(timestamp: float, now: float | None = None) -> str:
    """How long ago `timestamp` was: `just now`, `5m ago`, `3h ago`, `12d ago`."""
    seconds = max(0.0, (time.time() if now is None else now) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
