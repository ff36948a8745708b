"""MkDocs hook: the pages whose text comes from the code are generated when the site builds.

`docs/reference/configuration.md` holds the marker `<!-- generated: settings -->` and
`<!-- generated: presets -->`, replaced by the tables of `layoutedit.config` (every field's
default and help text, every preset's overrides); `docs/reference/cli.md` holds
`<!-- generated: cli -->`, replaced by each command's `--help`. The code stays the one source
of truth: a page cannot go stale, and `mkdocs build --strict` fails when a marker has no
generator or a generator fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")


def settings_markdown() -> str:
    """One table per section of `Settings`: name, default, meaning (from the field)."""
    from layoutedit.config import EditConfig, LearnConfig, SceneOptions

    parts = []
    for section, model in (("scene", SceneOptions), ("learn", LearnConfig), ("edit", EditConfig)):
        doc = (model.__doc__ or "").strip()
        rows = [f"### `[{section}]`", "", doc, "", "| setting | default | meaning |"]
        rows.append("| --- | --- | --- |")
        defaults = model().model_dump(mode="json")
        for name, field in model.model_fields.items():
            text = (field.description or "").replace("|", "\\|")
            default = str(defaults[name]).replace("|", "\\|")
            rows.append(f"| `{section}.{name}` | `{default}` | {text} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def presets_markdown() -> str:
    """Each preset's overrides over the field defaults, one row per changed setting (values as
    a TOML file would write them: JSON's `true`, lists, tables)."""
    from layoutedit.config import MODEL_PRESETS, PRESETS

    chosen_by = {preset: model for model, preset in MODEL_PRESETS.items()}
    parts = []
    for name, sections in PRESETS.items():
        head = f"### `{name}`"
        if name in chosen_by:
            head += f" (the default of `{chosen_by[name]}`)"
        rows = [head, ""]
        changes = [
            (f"{section}.{key}", value)
            for section, values in sections.items()
            for key, value in values.items()
        ]
        if not changes:
            rows.append("No overrides: every setting at its default (the published method).")
        else:
            rows += ["| setting | value |", "| --- | --- |"]
            rows += [f"| `{key}` | `{json.dumps(value)}` |" for key, value in changes]
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def cli_markdown() -> str:
    """`layoutedit --help` and each command's (and each `cache` subcommand's) `--help`."""
    from typer.testing import CliRunner

    from layoutedit.cli.app import app

    runner = CliRunner()
    env = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}

    def help_of(args: list[str]) -> str:
        result = runner.invoke(app, [*args, "--help"], env=env)
        if result.exit_code != 0:
            raise RuntimeError(f"layoutedit {' '.join(args)} --help failed: {result.output}")
        return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())

    from typer.main import get_command

    group: Any = get_command(app)
    parts = ["## `layoutedit`", "", "```text", help_of([]), "```"]
    for name, command in group.commands.items():
        parts += ["", f"## `layoutedit {name}`", "", "```text", help_of([name]), "```"]
        for sub in getattr(command, "commands", {}):
            parts += ["", f"### `layoutedit {name} {sub}`", "", "```text"]
            parts += [help_of([name, sub]), "```"]
    return "\n".join(parts)


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_markdown,
    "presets": presets_markdown,
    "cli": cli_markdown,
}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each `<!-- generated: NAME -->` marker by its generator's Markdown."""

    def generate(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise KeyError(f"{page.file.src_uri}: no generator for marker {name!r}")
        return GENERATORS[name]()

    return MARKER.sub(generate, markdown)
