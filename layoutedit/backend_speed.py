"""Backend speeds measured on this machine, and the backend `--backend auto` takes by them.

`layoutedit bench --backends cpu,cpu-fast` records, per backend, its mean seconds per edit
and per learn and its warm-up (a compiling backend's one-off compile is in it) in
`<cache dir>/backend-speeds.json`, keyed by the machine and the model. `auto` then weighs
each measured backend's warm-up plus its edits against the others' for the number of edits
the caller expects (`Editor(expected_edits=...)`: the layouts of one `edit` call, or many
for `serve`), and takes the cheapest; without measurements of at least two usable backends
it keeps the registry's priority order. A compiled backend thus wins a long session and
loses a one-off edit whose compile it would not repay.

Pure functions apart from `machine_key` and the file's reading and writing.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydantic import BaseModel, ValidationError

SPEEDS_FILE = "backend-speeds.json"

SERVE_EXPECTED_EDITS = 20
"""Edits a `serve` session is taken to make when `auto` weighs a compiling backend's
warm-up against them."""


class SpeedRecord(BaseModel):
    """One backend's measured speed on one machine with one model."""

    backend: str
    model: str
    """The `--model` it was measured with."""
    machine: str
    """`machine_key()` of the machine that measured it."""
    edit_s: float
    """Mean seconds per edit (one layout, all its seeds), warm."""
    learn_s: float
    """Mean seconds per learn."""
    warm_up_s: float
    """Seconds of the first, untimed learn and edit of a process (compile included)."""
    date: str
    """YYYY-MM-DD of the measurement."""


def machine_key() -> str:
    """What decides which backend is faster here: processor, core count, PyTorch version."""
    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "none"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}/{os.cpu_count()} cores/torch {torch_version}"


def speeds_path(cache_dir: Path) -> Path:
    """The speeds file in the concept cache folder."""
    return cache_dir / SPEEDS_FILE


def load_speeds(path: Path) -> list[SpeedRecord]:
    """The records in `path`; none when it is missing or unreadable (it is a cache that the
    next `bench --backends` rewrites, so a damaged one only costs the measured choice)."""
    try:
        rows = json.loads(path.read_text())
        return [SpeedRecord.model_validate(row) for row in rows]
    except (OSError, ValueError, TypeError, ValidationError):
        return []


def merge_speeds(old: Sequence[SpeedRecord], new: Sequence[SpeedRecord]) -> list[SpeedRecord]:
    """`old` with each record of the same backend, model and machine replaced by `new`'s."""
    fresh = {(r.backend, r.model, r.machine) for r in new}
    return [r for r in old if (r.backend, r.model, r.machine) not in fresh] + list(new)


def save_speeds(path: Path, new: Sequence[SpeedRecord]) -> None:
    """Merge `new` into the file at `path` (written whole, then moved into place)."""
    from layoutedit.atomic import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.model_dump() for r in merge_speeds(load_speeds(path), new)]
    write_text_atomic(path, json.dumps(rows, indent=1))


@dataclass(frozen=True)
class AutoChoice:
    """The backend `auto` takes and, when measurements decided it, why."""

    name: str
    reason: str | None = None
    """One line with the figures; None when the priority order decided."""


def expected_seconds(record: SpeedRecord, edits: int) -> float:
    """Seconds a process spends on warm-up and `edits` edits with this backend."""
    return record.warm_up_s + edits * record.edit_s


def choose_auto(
    usable: Sequence[str], records: Sequence[SpeedRecord], model: str, machine: str, edits: int
) -> AutoChoice:
    """The usable backend with the fewest expected seconds for `edits` edits of `model`.

    Args:
        usable: usable backend names, best priority first (`usable[0]` is the fallback).
        records: measurements (any machine, model, backend; the others are ignored).
        model: the `--model` of the run.
        machine: `machine_key()` of this machine.
        edits: edits the caller expects to make (at least 1).
    """
    if not usable:
        raise ValueError("no usable backend")
    measured = {
        r.backend: r
        for r in records
        if r.machine == machine and r.model == model and r.backend in usable
    }
    default = usable[0]
    if default not in measured or len(measured) < 2:
        return AutoChoice(default)
    n = max(1, edits)
    best = min(measured.values(), key=lambda r: expected_seconds(r, n))
    if best.backend == default:
        return AutoChoice(default)
    base = measured[default]
    reason = (
        f"backend {best.backend}: measured {best.edit_s:.2f} s an edit against "
        f"{base.edit_s:.2f} s for {default} (warm-up {best.warm_up_s:.1f} s against "
        f"{base.warm_up_s:.1f} s, compile included; {best.date}), faster over {n} "
        f"edit{'s' if n != 1 else ''}"
    )
    return AutoChoice(best.backend, reason)


def measured_auto(cache_dir: Path, model: str, edits: int) -> AutoChoice:
    """`choose_auto` over the usable backends here and the speeds recorded in `cache_dir`."""
    from layoutedit.backend import list_backends

    usable = [info.name for info in list_backends() if info.available]
    if not usable:
        from layoutedit.errors import UserError

        raise UserError("no usable backend; run `layoutedit backends` to see why")
    records = load_speeds(speeds_path(cache_dir))
    return choose_auto(usable, records, model, machine_key(), edits)
