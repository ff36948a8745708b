"""Every command's help renders what its source says: brackets kept, prose wrapped once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.cli.help_text import escape_brackets, prepare_help, reflow_paragraphs

_BOX = re.compile(r"[\s│╭╮╰╯─]+")


def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, [*path, name])


def _help(path: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.output


def test_reflow_joins_prose_and_keeps_indented_paragraphs() -> None:
    text = "First line\nsame sentence.\n\nExample:\n\n  cmd --a\n  cmd --b\n"
    joined = "First line same sentence.\n\nExample:\n\n  cmd --a\n  cmd --b"
    assert reflow_paragraphs(text) == joined


def test_escape_leaves_escaped_brackets_alone() -> None:
    assert escape_brackets("[[step]] and \\[ui]") == "\\[\\[step]] and \\[ui]"
    assert prepare_help(prepare_help("a [x]\nb")) == prepare_help("a [x]\nb")  # idempotent
    assert prepare_help(None) is None


@pytest.mark.parametrize(
    "path", [p for p, _ in _commands(typer.main.get_command(app), [])], ids=" ".join
)
def test_bracketed_help_survives_rendering(path: list[str]) -> None:
    """Rich takes `[word]` for a style tag and drops it unless escaped: `run`'s example
    script lost its `[[step]]` tables and `bench` its `[default: 8; ...]` this way."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
    wanted = [
        re.sub(r"\s+", " ", m.replace("\\", ""))
        for text in texts
        for m in re.findall(r"\\?\[[^\]\n]*\]+", text)
    ]
    rendered = _BOX.sub(" ", _help(path, 200))
    for literal in wanted:
        assert literal in rendered, f"{' '.join(path) or 'layoutedit'} --help lost {literal!r}"


def test_prose_paragraphs_wrap_at_the_terminal_not_at_the_source() -> None:
    # The source breaks this sentence after "swap"; a wide terminal shows it on one line.
    assert "target layouts that move, swap or scale objects" in _help(["bench"], 200)
    assert "[[step]]" in _help(["run"], 80)
