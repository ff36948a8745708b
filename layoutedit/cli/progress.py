"""The commands' Rich progress bars, drawn on stderr so that stdout keeps only results.

Learning draws one bar per stage with the running loss and keeps them; editing draws one
transient bar per layout, advanced per seed, that disappears before the layout's result line.
A bar is drawn only where it can be seen: never under --quiet/--json, and a transient bar
never on a console that is not an interactive terminal. (There it would draw nothing, but
Rich still ends every stopped display with a newline: a stray blank line per layout.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from layoutedit.cli.common import err_console


def progress_bar(detail: str, *, transient: bool, show: bool = True) -> Progress:
    """A stderr `Progress`: description, bar, `done/total`, `detail`, elapsed time.

    Args:
        detail: template of the column after the count (`"seeds"`, `"{task.fields[loss]}"`).
        transient: remove the bars when the display stops.
        show: False draws nothing (tasks can still be added and updated).
    """
    hidden = not show or (transient and not err_console.is_interactive)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(detail),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
        disable=hidden,
    )


class RichProgress:
    """A learning `ProgressHook` (`layoutedit.learning.training`): a bar per stage with the loss."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def stage(self, name: str, total: int, done: int) -> None:
        """Start a bar for a stage (`done` of `total` steps already made by a resumed run)."""
        if self.task is not None:
            self.progress.update(self.task, visible=True)
        self.task = self.progress.add_task(name, total=max(total, 1), completed=done, loss="")

    def step(self, loss: float) -> None:
        """Advance the bar and show the step's loss."""
        if self.task is not None:
            self.progress.update(self.task, advance=1, loss=f"loss {loss:.4f}")


@contextlib.contextmanager
def learning_progress(show: bool) -> Iterator[RichProgress | None]:
    """Bars for one learning run while the block runs; None (no bars) when `show` is False."""
    with progress_bar("{task.fields[loss]}", transient=False, show=show) as bars:
        yield RichProgress(bars) if show else None


@contextlib.contextmanager
def seeds_progress(name: str, seeds: int, show: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A transient bar for one layout while the block runs.

    Yields:
        An `EditSession.progress` callback, `(what, done, total)`, that moves the bar to
        `done` of `seeds`.
    """
    with progress_bar("seeds", transient=True, show=show) as bar:
        task = bar.add_task(name, total=seeds)

        def advance(_what: str, done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield advance
