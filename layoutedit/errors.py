"""The one exception type for mistakes a user can cause.

Raised where the problem is found, turned into one line on stderr (exit code 2) by the CLI.
Programming errors stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input, files or settings.

    Args:
        message: one line saying what is wrong and, where possible, how to fix it.
        path: the file the problem is in; prefixed to the message.
        exit_code: process exit code the CLI uses (2 for bad input).
    """

    def __init__(self, message: str, *, path: Path | str | None = None, exit_code: int = 2):
        self.message = message
        self.path = Path(path) if path is not None else None
        self.exit_code = exit_code
        super().__init__(self.line())

    def line(self) -> str:
        """The message as the CLI prints it: `path: message`."""
        if self.path is None:
            return self.message
        return f"{self.path}: {self.message}"
