"""The plan as a Rich table (one row per phase, then the totals) and as plain figures."""

from __future__ import annotations

from rich.table import Table

from layoutedit.planning.phases import PhaseCost
from layoutedit.planning.plan import Plan
from layoutedit.planning.totals import Total
from layoutedit.planning.tracker import CATEGORIES

GIB = 2**30
_SHORT = {
    "weights": "weights",
    "gradients": "grads",
    "optimizer": "optim",
    "activations": "activ",
    "attention": "attn",
}


def gib(n: int, scale: int = GIB) -> str:
    """Bytes in units of `scale` (GiB by default) with two decimals."""
    return f"{n / scale:.2f}"


def _unit(plan: Plan) -> tuple[str, int]:
    """GiB, or MiB for a model whose every peak is under 1 GiB (the tiny ones)."""
    biggest = max(plan.learn_total.peak_bytes, plan.edit_total.peak_bytes)
    return ("GiB", GIB) if biggest >= GIB else ("MiB", 2**20)


def flops_text(n: int) -> str:
    """FLOPs with an SI prefix (G, T, P)."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e6:.1f} M"


def _phase_row(phase: PhaseCost, repeats: int, scale: int) -> list[str]:
    name = phase.name if phase.batch == 1 else f"{phase.name} x{phase.batch}"
    return [
        name,
        *(gib(phase.peak[c], scale) for c in CATEGORIES),
        gib(phase.peak_total, scale),
        flops_text(phase.flops),
        str(repeats),
    ]


def _range(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"


def _total_row(stage: str, total: Total, scale: int) -> list[str]:
    return [
        f"[bold]{stage} total[/]",
        *([""] * len(CATEGORIES)),
        f"[bold]{gib(total.peak_bytes, scale)}[/]",
        f"[bold]{flops_text(total.flops)}[/]",
        "",
    ]


def evaluations_line(stage: str, total: Total) -> str:
    """`learn: peak 5.12 GiB in textual-inversion, 9.3 PFLOPs, UNet evaluations ...`."""
    unit, scale = ("GiB", GIB) if total.peak_bytes >= GIB else ("MiB", 2**20)
    return (
        f"{stage}: peak {gib(total.peak_bytes, scale)} {unit} in {total.peak_phase}, "
        f"{flops_text(total.flops)}FLOPs, UNet evaluations {_range(total.forward)} forward / "
        f"{_range(total.backward)} backward"
    )


def plan_table(plan: Plan) -> Table:
    """Per phase (x batch): GiB per category at the phase's peak, the peak, FLOPs of one
    step and how often the step runs; then the learn and edit totals."""
    arch = plan.arch
    unit, scale = _unit(plan)
    title = (
        f"{arch.name} ({arch.family}, {arch.image_size} px, {arch.prediction_type}) on "
        f"{plan.backend}{', low memory' if plan.low_memory else ''}: "
        f"{plan.objects} objects, {len(plan.edit.seeds)} seeds x {plan.edit.steps} steps; "
        f"{unit}"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("phase")
    for cat in CATEGORIES:
        table.add_column(_SHORT[cat], justify="right")
    table.add_column("peak", justify="right")
    table.add_column("FLOPs", justify="right")
    table.add_column("runs", justify="right")
    for phase in plan.learn_phases.values():
        table.add_row(*_phase_row(phase, plan.learn_total.repeats.get(phase.name, 0), scale))
    table.add_row(*_total_row("learn", plan.learn_total, scale), end_section=True)
    for phase in plan.edit_phases.values():
        table.add_row(*_phase_row(phase, plan.edit_total.repeats.get(phase.name, 0), scale))
    table.add_row(*_total_row("edit", plan.edit_total, scale))
    return table
