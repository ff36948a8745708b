"""`--backend auto` by measured speed (`layoutedit.backend_speed`): the choice, the speeds
file, the Editor's use of it and `layoutedit backends`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layoutedit.backend import list_backends
from layoutedit.backend_speed import (
    SpeedRecord,
    choose_auto,
    load_speeds,
    machine_key,
    save_speeds,
    speeds_path,
)
from layoutedit.cli.app import app
from layoutedit.editor import Editor

MODEL = "builtin:shapes-tiny"


def _record(backend: str, edit_s: float, warm_up_s: float, **kw: str) -> SpeedRecord:
    fields = {"model": MODEL, "machine": "here", "date": "2026-12-02", **kw}
    return SpeedRecord(backend=backend, edit_s=edit_s, learn_s=5.0, warm_up_s=warm_up_s, **fields)


# A reference backend that starts at once and a compiled one that edits 2.5x faster after
# a 40 s compile: the compile pays from the 10th edit on.
REFERENCE = _record("ref", edit_s=6.5, warm_up_s=1.0)
COMPILED = _record("compiled", edit_s=2.6, warm_up_s=40.0)


def test_a_compiling_backend_wins_a_long_run_and_loses_a_single_edit() -> None:
    usable = ["ref", "compiled"]
    one = choose_auto(usable, [REFERENCE, COMPILED], MODEL, "here", edits=1)
    assert one.name == "ref" and one.reason is None
    many = choose_auto(usable, [REFERENCE, COMPILED], MODEL, "here", edits=20)
    assert many.name == "compiled"
    assert many.reason is not None and "2.60 s" in many.reason and "40.0 s" in many.reason
    # Break-even: 1 + 6.5 n = 40 + 2.6 n at n = 10.
    assert choose_auto(usable, [REFERENCE, COMPILED], MODEL, "here", edits=9).name == "ref"
    assert choose_auto(usable, [REFERENCE, COMPILED], MODEL, "here", edits=11).name == "compiled"


def test_without_two_usable_measured_backends_the_priority_order_decides() -> None:
    usable = ["ref", "compiled"]
    assert choose_auto(usable, [], MODEL, "here", 50).name == "ref"
    assert choose_auto(usable, [COMPILED], MODEL, "here", 50).name == "ref"  # ref unmeasured
    # Measured elsewhere, with another model, or not usable here: not evidence.
    other_machine = _record("compiled", 0.1, 0.1, machine="there")
    other_model = _record("compiled", 0.1, 0.1, model="./sd15")
    records = [REFERENCE, other_machine, other_model]
    assert choose_auto(usable, records, MODEL, "here", 50).name == "ref"
    assert choose_auto(["ref"], [REFERENCE, COMPILED], MODEL, "here", 50).name == "ref"


def test_the_speeds_file_merges_by_backend_model_and_machine(tmp_path: Path) -> None:
    path = speeds_path(tmp_path)
    assert load_speeds(path) == []
    save_speeds(path, [REFERENCE, COMPILED])
    faster = _record("compiled", edit_s=2.0, warm_up_s=30.0)
    elsewhere = _record("compiled", edit_s=9.0, warm_up_s=9.0, machine="there")
    save_speeds(path, [faster, elsewhere])
    records = load_speeds(path)
    assert sorted((r.backend, r.machine, r.edit_s) for r in records) == [
        ("compiled", "here", 2.0),
        ("compiled", "there", 9.0),
        ("ref", "here", 6.5),
    ]
    path.write_text("{not json")
    assert load_speeds(path) == []  # a damaged cache costs the measured choice, nothing else


def _measured(tmp_path: Path, slow: float, fast: float) -> None:
    """Speeds here for the two usable backends shipped with the project."""
    here = machine_key()
    save_speeds(
        speeds_path(tmp_path),
        [
            _record("cpu", edit_s=slow, warm_up_s=1.0, machine=here),
            _record("cpu-fast", edit_s=fast, warm_up_s=40.0, machine=here),
        ],
    )


def test_the_editor_takes_the_measured_backend_for_the_edits_it_expects(tmp_path: Path) -> None:
    usable = [i.name for i in list_backends() if i.available]
    if usable[:1] != ["cpu"] or "cpu-fast" not in usable:
        pytest.skip("needs cpu first and cpu-fast usable")
    _measured(tmp_path, slow=6.5, fast=2.6)
    notices: list[str] = []
    few = Editor(model=MODEL, cache_dir=tmp_path, expected_edits=3, report=notices.append)
    assert few.backend.name == "cpu" and notices == []
    many = Editor(model=MODEL, cache_dir=tmp_path, expected_edits=20, report=notices.append)
    assert many.backend.name == "cpu-fast"
    assert len(notices) == 1 and "cpu-fast" in notices[0]
    named = Editor(model=MODEL, backend="cpu", cache_dir=tmp_path, expected_edits=20)
    assert named.backend.name == "cpu"  # a named backend is never second-guessed


def test_backends_command_shows_the_measured_seconds_and_both_choices(tmp_path: Path) -> None:
    usable = [i.name for i in list_backends() if i.available]
    if usable[:1] != ["cpu"] or "cpu-fast" not in usable:
        pytest.skip("needs cpu first and cpu-fast usable")
    runner = CliRunner()
    bare = runner.invoke(app, ["--cache-dir", str(tmp_path), "backends"])
    assert bare.exit_code == 0 and "no speeds measured here" in bare.output
    _measured(tmp_path, slow=6.5, fast=2.6)
    result = runner.invoke(app, ["--cache-dir", str(tmp_path), "--json", "backends"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["cpu"]["auto"] and not rows["cpu"]["auto_serve"]
    assert rows["cpu-fast"]["auto_serve"] and rows["cpu-fast"]["edit_s"] == 2.6
    text = runner.invoke(app, ["--cache-dir", str(tmp_path), "backends"])
    assert "it uses cpu-fast" in text.output
