"""`layoutedit bench-diff`: two runs of the same cases, paired edit by edit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layoutedit.bench.run_diff import diff_rows, load_run
from layoutedit.bench.scoring import METRICS
from layoutedit.cli.app import app
from layoutedit.errors import UserError

runner = CliRunner()


def write_run(folder: Path, seed: int, shift: dict[str, float], cases: int = 12) -> Path:
    """A bench.json of `full` and `paste` rows; `shift` is added to `full`'s metrics."""
    edits = []
    for i in range(cases):
        base = {m: 0.5 + 0.01 * ((i * 7) % 5) for m in METRICS}
        base["vacated_psnr"] = None  # as bench.json writes a measure an edit lacks
        full = {m: (v + shift.get(m, 0.0) if v is not None else None) for m, v in base.items()}
        edits.append({"variant": "full", "case": f"c{i}", **full})
        edits.append({"variant": "paste", "case": f"c{i}", **base})
    folder.mkdir(parents=True)
    options = {"scenes": 4, "layouts": 2, "seed": seed}
    (folder / "bench.json").write_text(json.dumps({"options": options, "edits": edits}))
    return folder


def test_a_better_and_a_worse_metric_are_marked(tmp_path: Path) -> None:
    before = write_run(tmp_path / "before", 2000, {})
    after = write_run(tmp_path / "after", 2000, {"layout_iou": 0.05, "colour_error": 0.05})
    md = tmp_path / "diff.md"
    result = runner.invoke(app, ["bench-diff", str(before), str(after), "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    full = next(line for line in result.output.splitlines() if line.strip().startswith("full"))
    assert "+0.05*" in full  # layout IoU up: better
    assert "+0.05-" in full  # colour error up: worse
    assert "n/a" in full  # `left dB` is null in every edit
    assert "[+0.05, +0.05]*" in md.read_text()

    result = runner.invoke(app, ["--json", "bench-diff", str(before), str(after)])
    rows = {(r["variant"], r["metric"]): r for r in json.loads(result.output)}
    assert rows[("full", "layout_iou")]["full_better"] is True
    assert rows[("full", "colour_error")]["full_better"] is False
    assert rows[("paste", "shape_iou")]["difference"] == 0


def test_runs_of_other_cases_are_refused(tmp_path: Path) -> None:
    before = write_run(tmp_path / "before", 0, {})
    after = write_run(tmp_path / "after", 1000, {})
    md = tmp_path / "diff.md"
    result = runner.invoke(app, ["bench-diff", str(before), str(after), "--markdown", str(md)])
    assert result.exit_code == 2
    assert "seed 0 vs 1000" in result.output and "Traceback" not in result.output
    assert not md.exists()


def test_a_folder_without_a_result_names_the_file(tmp_path: Path) -> None:
    after = write_run(tmp_path / "after", 0, {})
    result = runner.invoke(app, ["bench-diff", str(tmp_path / "nothing"), str(after)])
    assert result.exit_code == 2
    assert "nothing/bench.json" in result.output


def test_tiny_differences_in_every_column_fit_the_terminal_table(tmp_path: Path) -> None:
    # As in a run against a near-identical one: every metric a few ten-thousandths apart.
    shift = {m: -0.00035 - 0.00001 * i for i, m in enumerate(METRICS) if m != "vacated_psnr"}
    before = write_run(tmp_path / "before", 2000, {})
    after = write_run(tmp_path / "after", 2000, shift)
    result = runner.invoke(app, ["bench-diff", str(before), str(after)])
    assert result.exit_code == 0, result.output
    full = next(line for line in result.output.splitlines() if line.strip().startswith("full"))
    assert "…" not in full and "-4e-04" in full
    assert max(len(line) for line in result.output.splitlines()[1:]) <= 80  # under the title


def test_a_malformed_result_or_a_folder_for_the_table_is_one_line(tmp_path: Path) -> None:
    good = write_run(tmp_path / "good", 2000, {})
    bad = tmp_path / "bad"
    bad.mkdir()
    for text in ('{"options": [], "edits": []}', '{"edits": [1, "x"]}', "[]"):
        (bad / "bench.json").write_text(text)
        result = runner.invoke(app, ["bench-diff", str(bad), str(good)])
        assert result.exit_code == 2 and "not a bench result" in result.output, result.output
        assert "Traceback" not in result.output
    result = runner.invoke(app, ["bench-diff", str(good), str(good), "--markdown", str(bad)])
    assert result.exit_code == 2 and "is a folder" in result.output, result.output


def test_two_rows_of_one_run_are_paired_case_by_case(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "run", 2000, {"layout_iou": 0.05, "colour_error": 0.05}))
    rows = {c.metric: c for c in diff_rows(run, "full", ["paste"])}
    assert rows["layout_iou"].difference == pytest.approx(0.05)
    assert rows["layout_iou"].full_better
    assert rows["colour_error"].real and not rows["colour_error"].full_better
    assert rows["shape_iou"].difference == 0
    with pytest.raises(UserError, match="no row 'nope'"):
        diff_rows(run, "full", ["nope"])
