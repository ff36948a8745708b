"""Two benchmark runs of the same cases, compared edit by edit: what a change of model,
preset or code did, with the same paired intervals the bench gives `full` against its rows.

Runs are read from their `bench.json`; an edit pairs with the edit of the same variant on
the same case in the other run. Runs of different cases (another seed, scene count or
layout count) are refused: unpaired means would hide the change in the cases' spread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from layoutedit.bench.run import Comparison
from layoutedit.bench.scoring import LOWER_IS_BETTER, metrics_of
from layoutedit.bench.stats import paired_difference
from layoutedit.errors import UserError

RESULT_FILE = "bench.json"
CASE_OPTIONS = ("scenes", "layouts", "seed", "world")
"""The options that decide which cases a run edits (a run written before `world` existed
edited world v1)."""
_DEFAULTS = {"world": "v1"}


def load_run(folder: Path) -> dict[str, Any]:
    """A run's `bench.json` (a folder that `layoutedit bench --out` wrote, or the file).

    Raises:
        UserError: no such file, or not a bench result.
    """
    path = folder if folder.suffix == ".json" else folder / RESULT_FILE
    if not path.is_file():
        raise UserError("not found: give a `layoutedit bench --out` folder", path=path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the bench result: {exc}", path=path) from None
    edits = data.get("edits") if isinstance(data, dict) else None
    if not isinstance(edits, list) or not all(isinstance(e, dict) for e in edits):
        raise UserError("not a bench result (no per-edit records)", path=path)
    if not isinstance(data.get("options", {}), dict):
        raise UserError("not a bench result (its options are not a table)", path=path)
    return data


def _value(edit: dict[str, Any], metric: str) -> float:
    # bench.json writes a metric an edit has none of (no object left: `left dB`) as null.
    value = edit.get(metric)
    return float(value) if isinstance(value, int | float) else float("nan")


def diff_runs(before: dict[str, Any], after: dict[str, Any]) -> list[Comparison]:
    """`after` minus `before`, per variant both ran and per metric, paired over their edits.

    A comparison's `full_better` means here: the interval excludes zero on the side where
    `after` is better (lower colour error, higher everything else).

    Raises:
        UserError: the runs edited different cases, or share no variant.
    """
    options = [{**_DEFAULTS, **run.get("options", {})} for run in (before, after)]
    differ = [k for k in CASE_OPTIONS if options[0].get(k) != options[1].get(k)]
    if differ:
        shown = ", ".join(f"{k} {options[0].get(k)} vs {options[1].get(k)}" for k in differ)
        raise UserError(f"the runs edited different cases ({shown}): compare runs of one seed")
    edits = [
        {(e["variant"], e["case"]): e for e in run["edits"] if "variant" in e and "case" in e}
        for run in (before, after)
    ]
    variants = list(dict.fromkeys(v for v, _ in edits[1] if any(w == v for w, _ in edits[0])))
    if not variants:
        raise UserError("the runs share no variant: nothing to compare")
    out = []
    for variant in variants:
        keys = [key for key in edits[1] if key[0] == variant and key in edits[0]]
        new = [edits[1][k] for k in keys]
        old = [edits[0][k] for k in keys]
        out += _paired(variant, new, old, str(options[1]["world"]))
    return out


def _paired(
    name: str, new: list[dict[str, Any]], old: list[dict[str, Any]], world: str
) -> list[Comparison]:
    """`new` minus `old` per metric of `world`, the two lists paired edit by edit."""
    out = []
    for metric in metrics_of(world):
        diff = paired_difference([_value(e, metric) for e in new], [_value(e, metric) for e in old])
        better = diff.high < 0 if metric in LOWER_IS_BETTER else diff.low > 0
        out.append(Comparison(name, metric, diff.mean, diff.low, diff.high, bool(better)))
    return out


def diff_rows(run: dict[str, Any], row: str, others: list[str]) -> list[Comparison]:
    """In one run, `row` minus each of `others`, per metric, paired over the cases both
    edited (the bench itself prints `full` minus each row only). A comparison's `variant` is
    the other row's name; `full_better` means `row` is better.

    Raises:
        UserError: a row the run does not hold.
    """
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for edit in run["edits"]:
        if "variant" in edit and "case" in edit:
            by.setdefault(str(edit["variant"]), {})[str(edit["case"])] = edit
    for name in (row, *others):
        if name not in by:
            raise UserError(f"the run has no row {name!r}; it has {', '.join(by)}")
    world = str({**_DEFAULTS, **run.get("options", {})}["world"])
    out = []
    for other in others:
        cases = [c for c in by[row] if c in by[other]]
        out += _paired(other, [by[row][c] for c in cases], [by[other][c] for c in cases], world)
    return out
