"""Help texts as the terminal shows them: prose wraps at the terminal's width, brackets stay.

Typer's rich markup mode keeps every newline of a command's later paragraphs, so help written
at the source's line width broke mid-sentence on an 80-column terminal; and rich reads any
`[word...]` as a style tag and drops it, which ate `[[step]]` from `run`'s example script and
`[default: 8; 1 with --quick]` from `bench`'s options. Every help text of the command tree
goes through `prepare_help` once, when the root group is built, so no help string needs
escaping by hand (a `\\[` already escaped is left as it is).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_UNESCAPED_BRACKET = re.compile(r"(?<!\\)\[")


def escape_brackets(text: str) -> str:
    """`[x]` -> `\\[x]` for every `[` not already escaped, so rich prints it as written."""
    return _UNESCAPED_BRACKET.sub(r"\\[", text)


def reflow_paragraphs(text: str) -> str:
    """Join the lines of each prose paragraph (paragraphs split by a blank line).

    A paragraph with an indented line (an example command, a file listing) keeps its lines:
    there the line breaks are the content.
    """
    paragraphs = inspect.cleandoc(text).split("\n\n")
    out = []
    for paragraph in paragraphs:
        lines = paragraph.split("\n")
        if any(line[:1].isspace() for line in lines):
            out.append(paragraph)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def prepare_help(text: str | None) -> str | None:
    """A command's or option's help as written in the source -> as typer should render it."""
    if not text:
        return text
    return escape_brackets(reflow_paragraphs(text))


def prepare_command_tree(command: Any) -> None:
    """Apply `prepare_help` to `command`, its parameters and every sub-command, in place.

    Args:
        command: a click command or group as typer builds it (typer >= 0.20 runs on a
            private copy of click, so the classes are duck-typed: `help`, `params`,
            `commands`).
    """
    command.help = prepare_help(command.help)
    for param in getattr(command, "params", ()):
        if hasattr(param, "help"):
            param.help = prepare_help(param.help)
    for sub in getattr(command, "commands", {}).values():
        prepare_command_tree(sub)
