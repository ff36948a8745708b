"""Where `layoutedit` and `python -m layoutedit` start.

Importing the command-line interface takes a moment (typer, rich, numpy, pydantic, each
command's module). Ctrl-C or SIGTERM in that moment, before any command runs, ends like
every other interrupt: one line on stderr and exit 130 (SIGINT) or 143 (SIGTERM), not
Python's traceback. Nothing has been written by then.
"""

from __future__ import annotations

import contextlib
import signal
import sys


class _EarlyTerm(KeyboardInterrupt):
    """SIGTERM while the CLI is imported."""


def _raise_term(signum: int, frame: object) -> None:
    raise _EarlyTerm()


def main() -> None:
    """Console-script entry point: import the CLI, then run it (`layoutedit.cli.app.main`)."""
    # The handler stays until the command's own (`common.interrupt_signals`) replaces it.
    with contextlib.suppress(ValueError):  # ValueError: not the main thread
        signal.signal(signal.SIGTERM, _raise_term)
    try:
        from layoutedit.cli.app import main as run
    except KeyboardInterrupt as exc:
        _leave(exc)
    try:
        run()
    except KeyboardInterrupt as exc:  # between the import and the command's own handling
        _leave(exc)


def _leave(exc: KeyboardInterrupt) -> None:
    signum = signal.SIGTERM if isinstance(exc, _EarlyTerm) else signal.SIGINT
    sys.stderr.write(f"interrupted ({signum.name}) while starting: nothing was written\n")
    raise SystemExit(128 + int(signum)) from None
