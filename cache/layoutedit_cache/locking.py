"""Per-key locks that hold across processes and are re-entrant within one, on `filelock`.

A lock is the file `<locks>/<key>.lock`, held with `filelock.FileLock` (`flock` on POSIX,
`LockFileEx` on Windows). The kernel drops it when its holder exits, even by SIGKILL, so a
crashed learner never blocks the next one.

Within one process the lock is re-entrant per thread (`ConceptCache.put` takes it again under
a caller's `with cache.lock(key):`) and exclusive between threads (`thread_local=True`: each
thread locks through its own descriptor).

Lock files are empty and never removed while the cache is in use: removing one while another
process waits on it would let that process lock the orphaned file while a third creates a
new one, two holders of "the" lock (recent filelock versions detect this; the oldest we
allow do not). `cache prune` and `cache verify --fix` leave them; they cost an inode each.

Where the file system refuses locks (some network file systems answer ENOLCK), the lock
falls back to an in-process lock and warns once: two processes may then both compute a
result; the store's atomic writes still keep every entry whole.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout

_NO_LOCK_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
"""A lock file that cannot be made in a read-only cache: nothing will be written there, so
the in-process lock is enough (the cache refuses every write itself)."""


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
        self._files: dict[str, FileLock] = {}
        self._local: dict[str, threading.RLock] = {}  # the fallback, and per-thread depth
        self._cross_process = True

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.lock"

    @contextlib.contextmanager
    def hold(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the lock of `key` for the block; `on_wait()` is called once if we must wait."""
        local = self._slot(key)
        if not local.acquire(blocking=False):  # another thread of this process holds it
            if on_wait is not None:
                on_wait()
                on_wait = None
            local.acquire()
        try:
            with self._file_lock(key, on_wait):
                yield
        finally:
            local.release()

    @contextlib.contextmanager
    def try_hold(self, key: str) -> Iterator[bool]:
        """Hold the lock of `key` for the block if it is free now; yields whether it was taken."""
        local = self._slot(key)
        if not local.acquire(blocking=False):
            yield False
            return
        try:
            lock = self._lock_file(key)
            if lock is None:
                yield True
                return
            try:
                lock.acquire(blocking=False)
            except (Timeout, PermissionError):
                yield False
                return
            try:
                yield True
            finally:
                lock.release()
        finally:
            local.release()

    def _slot(self, key: str) -> threading.RLock:
        with self._mutex:
            return self._local.setdefault(key, threading.RLock())

    def _lock_file(self, key: str) -> FileLock | None:
        """The key's FileLock (one per key, shared by this process's threads), or None when
        cross-process locking is not available here."""
        if not self._cross_process:
            return None
        with self._mutex:
            lock = self._files.get(key)
            if lock is None:
                try:
                    self.folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    if exc.errno in _READ_ONLY_ERRNOS:
                        return None
                    raise
                lock = self._files[key] = FileLock(str(self.path(key)), thread_local=True)
            return lock

    @contextlib.contextmanager
    def _file_lock(self, key: str, on_wait: Callable[[], None] | None) -> Iterator[None]:
        """The cross-process part of `hold` (re-entrant: filelock counts per thread)."""
        lock = self._lock_file(key)
        if lock is None:
            yield
            return
        try:
            try:
                lock.acquire(blocking=False)
            except Timeout:
                if on_wait is not None:
                    on_wait()
                lock.acquire()
        except OSError as exc:
            if exc.errno in _READ_ONLY_ERRNOS:
                yield
                return
            if exc.errno not in _NO_LOCK_ERRNOS:
                raise
            self._fallback(str(exc))
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def _fallback(self, why: str) -> None:
        with self._mutex:
            if not self._cross_process:
                return
            self._cross_process = False
        self._warn(
            f"cross-process cache locks are not available here ({why}); "
            "two processes may learn the same scene twice"
        )
