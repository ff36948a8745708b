"""Per-key locks that hold across processes (POSIX `flock`) and are re-entrant within one.

A lock is the file `<locks>/<key>.lock` held with `fcntl.flock(LOCK_EX)`. The kernel drops it
when its holder exits, even by SIGKILL, so a crashed learner never blocks the next one.

Within one process the lock is re-entrant per thread (`ConceptCache.put` takes it again under
a caller's `with cache.lock(key):`) and exclusive between threads.

Where `flock` is missing (Windows) or refused (some network file systems), the lock falls back
to an in-process lock and warns once: two processes may then both compute a result; the
store's atomic writes still keep every entry whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_NO_FLOCK_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@dataclass
class _Held:
    rlock: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    fd: int | None = None


class KeyLocks:
    """The lock files under one folder.

    Args:
        folder: where `<key>.lock` files live (created on first use).
        warn: called once, with one line, if cross-process locking is not available.
    """

    def __init__(self, folder: Path, warn: Callable[[str], None]) -> None:
        self.folder = folder
        self._warn = warn
        self._mutex = threading.Lock()
        self._held: dict[str, _Held] = {}
        self._flock_ok = fcntl is not None
        self._warned = False

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.lock"

    @contextlib.contextmanager
    def hold(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the lock of `key` for the block; `on_wait()` is called once if we must wait."""
        held = self._slot(key)
        if not held.rlock.acquire(blocking=False):
            if on_wait is not None:
                on_wait()
                on_wait = None
            held.rlock.acquire()
        try:
            if held.depth == 0:
                held.fd = self._acquire_file(key, on_wait, blocking=True)
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
                if held.depth == 0:
                    self._release_file(held)
        finally:
            held.rlock.release()

    def discard(self, key: str) -> bool:
        """Remove the lock file of `key` if nobody holds it; False if it is held (or absent)."""
        held = self._slot(key)
        if not held.rlock.acquire(blocking=False):
            return False
        try:
            if held.depth > 0 or not self.path(key).exists():
                return False
            fd = self._acquire_file(key, None, blocking=False)
            if fd is None:
                return False
            try:
                # Unlink while holding it: a waiter on this inode sees the path gone and retries.
                self.path(key).unlink(missing_ok=True)
            finally:
                self._release_file(_Held(fd=fd))
            return True
        finally:
            held.rlock.release()

    @contextlib.contextmanager
    def try_hold(self, key: str) -> Iterator[bool]:
        """Hold the lock of `key` for the block if it is free now; yields whether it was taken."""
        held = self._slot(key)
        if not held.rlock.acquire(blocking=False):
            yield False
            return
        try:
            if held.depth == 0:
                fd = self._acquire_file(key, None, blocking=False)
                if fd is None:
                    yield False
                    return
                held.fd = fd
            held.depth += 1
            try:
                yield True
            finally:
                held.depth -= 1
                if held.depth == 0:
                    self._release_file(held)
        finally:
            held.rlock.release()

    def _slot(self, key: str) -> _Held:
        with self._mutex:
            return self._held.setdefault(key, _Held())

    def _acquire_file(
        self, key: str, on_wait: Callable[[], None] | None, *, blocking: bool
    ) -> int | None:
        """flock the key's file; returns its fd, or None if not blocking and it is busy.

        Returns -1 (no fd) when cross-process locking is unavailable.
        """
        if fcntl is None:  # pragma: no cover - not POSIX
            self._fallback("fcntl is not available on this platform")
        if not self._flock_ok:
            return -1
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if not blocking:
                        os.close(fd)
                        return None
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK_ERRNOS:
                    self._fallback(str(exc))
                    return -1
                raise
            # The file may have been unlinked (by `discard`) while we waited: then our lock is
            # on an orphan inode and guards nothing; start again on the current file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _release_file(self, held: _Held) -> None:
        fd, held.fd = held.fd, None
        if fd is None or fd < 0:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _fallback(self, why: str) -> None:
        self._flock_ok = False
        if not self._warned:
            self._warned = True
            self._warn(
                f"cross-process cache locks are not available here ({why}); "
                "two processes may learn the same scene twice"
            )
