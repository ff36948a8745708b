"""`layoutedit bench --backends cpu,cpu-fast`: seconds per learn and per edit of each backend
on the same cases, in one run, with the ratio to the first backend and how far its images
are from the first backend's.

Each scene is learned once per backend (no cache, so every backend pays the same work) and
each of its layouts edited with the same seeds. A scene's preparation (source encoding
and DDIM inversion, done once per scene and reused by every later edit of it) is timed
apart from the edits. The concept a backend learns is the one it
edits with, so the image difference covers learning and editing together. Timings are wall
clock on whatever else the machine runs: compare backends from the same run only.

Before anything is timed, each backend runs one tiny learn and edit (a few steps) on the
first case; its seconds are reported apart (`warm_up_s`): they hold a compiling backend's
compile time (`cpu-fast` compiles its UNet once per process, and every model loaded later
reuses the compiled code), which would otherwise land in its first timed edit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from layoutedit.config import Settings

if TYPE_CHECKING:
    from layoutedit.backend_speed import SpeedRecord


@dataclass
class BackendTiming:
    """One backend's figures over every case."""

    name: str
    learn_seconds: list[float] = field(default_factory=list)
    """Per scene."""
    edit_seconds: list[float] = field(default_factory=list)
    """Per layout (all seeds), the scene's preparation not included."""
    prepare_seconds: list[float] = field(default_factory=list)
    """Per scene: the edit session's preparation (source encoding and DDIM inversion), which
    continuous editing does once per scene and then reuses (`Editor` caches it)."""
    images: list[np.ndarray] = field(default_factory=list)
    """Every candidate image, case order then seed order."""
    warm_up_seconds: float | None = None
    """The untimed warm-up learn and edit (a compiling backend's compile time is in it)."""

    @property
    def learn_mean(self) -> float:
        """Mean seconds per learn."""
        return float(np.mean(self.learn_seconds)) if self.learn_seconds else 0.0

    @property
    def edit_mean(self) -> float:
        """Mean seconds per edit (one layout, all seeds; preparation apart)."""
        return float(np.mean(self.edit_seconds)) if self.edit_seconds else 0.0

    @property
    def prepare_mean(self) -> float:
        """Mean seconds of a scene's preparation (encoding and inversion)."""
        return float(np.mean(self.prepare_seconds)) if self.prepare_seconds else 0.0


@dataclass
class BackendComparison:
    """Every backend's timing; the first backend is the reference of the ratios."""

    timings: list[BackendTiming]

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready rows: seconds, speed-up over the first backend, image difference."""
        ref = self.timings[0]
        rows = []
        for t in self.timings:
            diffs = [
                np.abs(a.astype(np.int16) - b.astype(np.int16))
                for a, b in zip(ref.images, t.images, strict=True)
            ]
            rows.append(
                {
                    "backend": t.name,
                    "learn_s": t.learn_mean,
                    "edit_s": t.edit_mean,
                    "prepare_s": t.prepare_mean,
                    "learn_speedup": ref.learn_mean / t.learn_mean if t.learn_mean else None,
                    "edit_speedup": ref.edit_mean / t.edit_mean if t.edit_mean else None,
                    "prepare_speedup": (
                        ref.prepare_mean / t.prepare_mean if t.prepare_mean else None
                    ),
                    "max_pixel_diff": int(max((int(d.max()) for d in diffs), default=0)),
                    "mean_pixel_diff": float(np.mean([d.mean() for d in diffs])) if diffs else 0.0,
                    "warm_up_s": t.warm_up_seconds,
                }
            )
        return rows


def speed_records(comparison: BackendComparison, model: str) -> list[SpeedRecord]:
    """Each backend's measured speed on this machine, as `--backend auto` reads it; a
    backend that was not warmed up counts its first edit's seconds as its warm-up."""
    from layoutedit.backend_speed import SpeedRecord, machine_key

    machine, today = machine_key(), time.strftime("%Y-%m-%d")
    return [
        SpeedRecord(
            backend=t.name,
            model=model,
            machine=machine,
            edit_s=t.edit_mean,
            learn_s=t.learn_mean,
            warm_up_s=(
                t.warm_up_seconds
                if t.warm_up_seconds is not None
                else (t.edit_seconds[0] if t.edit_seconds else 0.0)
            ),
            date=today,
        )
        for t in comparison.timings
        if t.edit_seconds
    ]


def parse_backends(text: str) -> list[str]:
    """`cpu,cpu-fast` -> ["cpu", "cpu-fast"]; UserError for fewer than one or a repeat."""
    from layoutedit.errors import UserError

    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError("--backends takes distinct backend names, comma-separated")
    return names


def compare_backends(
    names: Sequence[str],
    model_spec: str,
    settings: Settings,
    cases: Sequence[Any],
    *,
    say: Callable[[str], None] = lambda line: None,
    warm_up: bool = True,
) -> BackendComparison:
    """Learn each case's scene and edit its layouts on every backend.

    Args:
        names: backend names (the first is the reference of the ratios).
        model_spec: the `--model`.
        settings: learn and edit settings (the same for every backend).
        cases: bench cases (`bench.cases.make_cases`); cases of one scene share its learn.
        warm_up: run a one-step learn and edit on every backend first, untimed.
    """
    from layoutedit.backend import get_backend
    from layoutedit.editing.session import EditSession
    from layoutedit.learning.learn import learn_concept
    from layoutedit.loading.model_loading import load_model
    from layoutedit.scenes.scene import layout_from_labels, scene_from_arrays
    from layoutedit.shapes.world import MASK_BACKGROUND, MASK_PALETTE

    by_scene: dict[int, list[Any]] = {}
    for case in cases:
        by_scene.setdefault(case.scene_seed, []).append(case)
    warm_up_seconds: dict[str, float] = {}
    if warm_up and cases:
        # One tiny untimed learn and edit per backend first: the first calls of a process
        # (lazy imports, oneDNN primitive creation, compiling) would otherwise be charged to
        # the first timed case. Per backend, so that each one's warm-up (compile) time can
        # be reported on its own.
        tiny = settings.model_copy(
            update={
                "learn": settings.learn.model_copy(update={"ti_steps": 1, "ft_steps": 1}),
                # Two sampled steps: the last one records attention, the one before is a
                # plain CFG pass; a compiling backend compiles each kind of pass on its first
                # call, so the warm-up must hold one of each. The timed edits' seeds too: a
                # backend that samples them as one batch compiles once per batch size.
                "edit": settings.edit.model_copy(update={"steps": 4, "paste_strength": 0.5}),
            }
        )
        for name in names:
            began = time.perf_counter()
            compare_backends([name], model_spec, tiny, cases[:1], warm_up=False)
            warm_up_seconds[name] = time.perf_counter() - began
            say(f"{name}: warmed up (compile included) in {warm_up_seconds[name]:.1f} s")
    # Scenes outside, backends inside: a change in the machine's load during the run then
    # falls on every backend alike instead of on whichever ran last.
    backends = {name: get_backend(name) for name in names}
    timings = {
        name: BackendTiming(name, warm_up_seconds=warm_up_seconds.get(name)) for name in names
    }
    for seed, group in by_scene.items():
        first = group[0]
        scene = scene_from_arrays(
            first.source.image,
            first.source_labels,
            first.names,
            MASK_PALETTE[: first.n_objects],
            MASK_BACKGROUND,
            settings.scene,
        )
        for name, backend in backends.items():
            timing = timings[name]
            model = load_model(model_spec, device=backend.device)
            began = time.perf_counter()
            learned = learn_concept(model, scene, settings.learn, backend=backend)
            timing.learn_seconds.append(time.perf_counter() - began)
            say(f"{name}: scene {seed} learned in {timing.learn_seconds[-1]:.1f} s")
            model = load_model(model_spec, device=backend.device, dtype=backend.dtype)
            began = time.perf_counter()
            session = EditSession(model, scene, settings.edit, backend, concept=learned.concept)
            # The inversion runs on the session's first need of it: force it here, so that
            # the scene's preparation is timed apart from its edits.
            session.ensure_inversion()
            timing.prepare_seconds.append(time.perf_counter() - began)
            for case in group:
                began = time.perf_counter()
                result = session.edit(layout_from_labels(case.layout, scene))
                timing.edit_seconds.append(time.perf_counter() - began)
                timing.images.extend(c.image for c in result.candidates)
    return BackendComparison([timings[name] for name in names])


def rich_backend_table(comparison: BackendComparison) -> Any:
    """A Rich table of `comparison.rows()`."""
    from rich.table import Table

    table = Table(
        title="Backends on the same cases (speed-up over the first; warm-up, compile "
        "included, untimed)"
    )
    columns = (
        "backend",
        "learn s",
        "prepare s",
        "edit s",
        "learn x",
        "prepare x",
        "edit x",
        "max / mean px diff",
        "warm-up s",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "backend" else "right")
    for row in comparison.rows():
        table.add_row(
            row["backend"],
            f"{row['learn_s']:.1f}",
            f"{row['prepare_s']:.2f}",
            f"{row['edit_s']:.2f}",
            f"{row['learn_speedup']:.2f}" if row["learn_speedup"] else "-",
            f"{row['prepare_speedup']:.2f}" if row["prepare_speedup"] else "-",
            f"{row['edit_speedup']:.2f}" if row["edit_speedup"] else "-",
            f"{row['max_pixel_diff']} / {row['mean_pixel_diff']:.3f}",
            f"{row['warm_up_s']:.1f}" if row["warm_up_s"] is not None else "-",
        )
    return table
