"""The commands of the README and the guide run as written.

- The README's shell blocks that use only the embedded model run in order, in a fresh
  folder, through the CLI (in-process), with a preset of the `fast` kind standing in for the
  embedded model's tuned one (every stage, in two or three steps).
- Every other `layoutedit` command line in the README, CONTRIBUTING.md and docs/ (own models,
  photos that are not here) is parsed against the CLI: the command exists, its options
  exist and take the values given, its layout operations are well formed.
- Every `make` target named exists, and every `pip install` extra is one of pyproject's.
"""

from __future__ import annotations

import functools
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from layoutedit.cli.app import app, hoist_global_options
from layoutedit.scenes.layout_edits import parse_flags

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDE = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.S)


def shell_blocks(path: Path) -> list[list[list[str]]]:
    """The shell blocks of a Markdown file: each a list of commands, each a list of words
    (comments dropped, backslash continuations joined, `&&` chains split)."""
    blocks = []
    for body in SHELL_BLOCK.findall(path.read_text()):
        commands: list[list[str]] = []
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while "&&" in words:
                cut = words.index("&&")
                commands.append(words[:cut])
                words = words[cut + 1 :]
            if words:
                commands.append(words)
        blocks.append(commands)
    return blocks


def uses_embedded_model_only(block: list[list[str]]) -> bool:
    """A block of `layoutedit` commands that name no model, checkpoint or segmenter of
    the reader's own (so the embedded model runs them)."""
    if not block or any(words[0] != "layoutedit" for words in block):
        return False
    own = ("--model", "--segmenter", "--image", "--arch", "--model-config")
    return not any(word.split("=")[0] in own for words in block for word in words)


@functools.cache
def cli_group() -> Any:
    """The click group Typer builds from the app (built once: it walks every command)."""
    return get_command(app)


def parse_only(args: list[str]) -> dict[str, Any]:
    """Parse `layoutedit ARGS` as the CLI would, without running it: the parameters of the
    command (and of the `cache` subcommand), or click's usage error."""
    group = cli_group()
    args = hoist_global_options(list(args), group)
    ctx = group.make_context("layoutedit", args)
    rest = [*getattr(ctx, "_protected_args", []), *getattr(ctx, "protected_args", []), *ctx.args]
    name, command, tail = group.resolve_command(ctx, rest)
    if hasattr(command, "commands"):  # a group (`cache`): its subcommand
        sub_ctx = command.make_context(name, tail, parent=ctx)
        sub_rest = [*getattr(sub_ctx, "_protected_args", []), *sub_ctx.args]
        sub_name, sub, sub_tail = command.resolve_command(sub_ctx, sub_rest)
        return dict(sub.make_context(sub_name, sub_tail, parent=sub_ctx).params)
    return dict(command.make_context(name, tail, parent=ctx).params)


# The `fast` preset's stages in fewer steps (the README's commands run unchanged).
SMOKE_PRESET = {
    "learn": {"ti_steps": 2, "ti_batch_size": 1, "ft_steps": 2, "ft_batch_size": 1},
    "edit": {
        "steps": 3,
        "max_iter_to_alter": 2,
        "refinement": {0: 0.9},
        "max_refinement_steps": 1,
        "blend_steps": 2,
        "seeds": (0,),
    },
}


def test_the_readme_runs_the_embedded_model_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from layoutedit import config

    runnable = [b for b in shell_blocks(README) if uses_embedded_model_only(b)]
    assert runnable, "README: no shell block on the embedded model"
    monkeypatch.chdir(tmp_path)
    # Every stage of the README's commands, in the fewest steps that run each of them.
    monkeypatch.setitem(config.PRESETS, "smoke", SMOKE_PRESET)
    monkeypatch.setitem(config.MODEL_PRESETS, "builtin:shapes-tiny", "smoke")
    for block in runnable:
        for words in block:
            result = CliRunner().invoke(app, ["--backend", "cpu", *words[1:]])
            assert result.exit_code == 0, f"{shlex.join(words)}:\n{result.output}"
    # What the quick start promises: the demo's sheet and GIF, and an edit per layout.
    assert (tmp_path / "demo" / "demo-sheet.png").is_file()
    assert (tmp_path / "demo" / "demo.gif").is_file()
    sheets = sorted(p.parent.name for p in (tmp_path / "layoutedit-out").rglob("sheet.png"))
    assert sheets == ["layout1", "operations"]


def every_layoutedit_command() -> list[tuple[str, list[str]]]:
    found = []
    for path in GUIDE:
        for block in shell_blocks(path):
            for words in block:
                if words[0] == "layoutedit":
                    found.append((f"{path.relative_to(ROOT)}: {shlex.join(words)}", words[1:]))
    return found


@pytest.mark.parametrize(("where", "args"), every_layoutedit_command(), ids=lambda v: str(v)[:60])
def test_each_documented_command_parses(where: str, args: list[str]) -> None:
    params = parse_only(args)
    # The layout operations it names are well formed (the same parser `edit` uses).
    flags = {k: params.get(k) or () for k in ("move", "scale", "swap", "box", "to_front")}
    parse_flags(**flags)


def test_make_targets_and_pip_extras_exist() -> None:
    targets = set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    extras = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    for path in GUIDE:
        for block in shell_blocks(path):
            for words in block:
                if words[0] == "make":
                    named = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
                    assert set(named) <= targets, f"{path.name}: make {named}"
                if Path(words[0]).name in ("pip", "pip3") and words[1:2] == ["install"]:
                    for word in words:
                        match = re.fullmatch(r"(?:-e\s*)?\.\[([\w,]+)\]", word)
                        if match:
                            assert set(match.group(1).split(",")) <= extras, f"{path.name}: {word}"


def test_the_documented_commands_were_found() -> None:
    # Guards the extraction itself: a format change must not make the checks above vacuous.
    commands = [where for where, _ in every_layoutedit_command()]
    assert sum(w.startswith("README.md") for w in commands) >= 8
    assert any("--model" in w and "sd15" in w for w in commands)
