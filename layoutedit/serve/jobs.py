"""One job at a time on the model, and a cancel that only stops the caller's own job.

The app has one `Editor` (one model) for every browser tab. Gradio's queue already runs
one event at a time; the gate adds who is running, so that "Cancel" in one tab never stops
another tab's learning or edit, and a tab that arrives while a job runs waits its turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class JobGate:
    """Serialises jobs and remembers whose job runs.

    Args:
        cancel: stops the running job (e.g. `Editor.cancel`).
    """

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel
        self._lock = threading.Lock()
        self._owner: str | None = None
        self._stop = False  # the running job was asked to stop
        self._guard = threading.Lock()  # protects _owner and _stop

    @property
    def owner(self) -> str | None:
        """The session whose job runs now, or None."""
        with self._guard:
            return self._owner

    @property
    def stop_requested(self) -> bool:
        """Whether the running job was cancelled. Jobs check it at each step too: the
        editor's own flag is reset when its call starts, so a cancel that comes between
        the job's start and the editor call would otherwise be lost."""
        with self._guard:
            return self._stop

    @contextmanager
    def job(self, session: str) -> Iterator[None]:
        """Hold the model for `session`'s job (waits while another job runs)."""
        with self._lock:
            with self._guard:
                self._owner, self._stop = session, False
            try:
                yield
            finally:
                with self._guard:
                    self._owner, self._stop = None, False

    def cancel(self, session: str) -> bool:
        """Stop the running job if it is `session`'s; returns whether one was stopped."""
        with self._guard:
            if self._owner != session:
                return False
            self._stop = True
            self._cancel()
            return True
