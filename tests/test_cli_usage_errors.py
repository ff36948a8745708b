"""Click's own usage errors (unknown option or command, missing argument, bad value) are one
`error:` line on stderr and exit 2 for every command; `--help` still renders in full."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from layoutedit.cli.app import app, usage_error_line

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["edit", "--fooo"], ["layoutedit edit", "no such option", "--fooo"]),
        (["learn", "scene", "--ti-stepz", "3"], ["layoutedit learn", "--ti-stepz"]),
        (["cache", "ls", "--bad"], ["layoutedit cache ls", "--bad"]),
        (["run"], ["layoutedit run", "missing argument 'SCRIPT'"]),
        (["cache", "rm"], ["layoutedit cache rm", "missing argument"]),
        (["edit", "--seeds"], ["layoutedit edit", "'--seeds' requires an argument"]),
        (["serve", "--port", "0"], ["layoutedit serve", "'--port'"]),
        (["plan", "--objects", "many"], ["layoutedit plan", "'--objects'"]),
        (["fooo"], ["layoutedit:", "no such command 'fooo'"]),
        (["--backend"], ["layoutedit:", "'--backend' requires an argument"]),
        # A global option after the command is moved in front; a typo next to it still fails.
        (["inspect", "--json", "--jsn"], ["layoutedit inspect", "--jsn"]),
    ],
)
def test_usage_errors_are_one_line(args: list[str], names: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    assert lines[0].endswith("--help')"), lines[0]
    assert "Usage:" not in result.output and "╭" not in result.output
    assert result.stdout == ""


def test_help_still_renders() -> None:
    for args in (["--help"], ["edit", "--help"], ["cache", "ls", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.stdout and "Options" in result.stdout
        assert "--help" in result.stdout
    # A group called bare shows its help (click's "no args is help"), not an error line.
    bare = runner.invoke(app, ["cache"])
    assert "Usage:" in bare.stdout and "ls" in bare.stdout
    assert "error:" not in bare.output


def test_usage_error_line_is_one_line_without_a_context() -> None:
    import typer

    error = typer.BadParameter("Bad\nvalue for --x.")
    assert usage_error_line(error, "layoutedit edit") == (
        "layoutedit edit: invalid value: Bad value for --x (try 'layoutedit edit --help')"
    )
