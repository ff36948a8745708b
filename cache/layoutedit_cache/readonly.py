"""Reading a cache index that cannot be written, and the errors of a cache that is read-only
or whose index is damaged.

diskcache opens its database for writing (it creates tables and settings), so a cache folder
on a read-only mount, or owned by someone else, fails before the first read. Reading
commands (`cache ls`, `show`, `verify`, `export`, and hits of learn and edit) then go
through `ReadOnlyIndex`, which reads the same SQLite table with `mode=ro` (or, when SQLite
would need to write its WAL index beside the file, `immutable=1`). Every write raises
`CacheReadOnly`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from layoutedit.errors import UserError

_MODE_RAW, _MODE_TEXT = 1, 3  # diskcache's value modes for a str stored inline or in a file


class CacheReadOnly(UserError):
    """The cache folder cannot be written: a command that would change it stops here."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            "the cache folder is read-only: reading commands (cache ls, show, verify, export) "
            "work, this one needs to write; give a writable --cache-dir",
            path=root,
        )


class IndexDamaged(UserError):
    """The index database cannot be read; `cache verify --fix` rebuilds it."""

    def __init__(self, index_dir: Path, reason: str) -> None:
        super().__init__(
            f"the cache index is damaged ({reason}); run `layoutedit cache verify --fix` to "
            "rebuild it from the artifacts",
            path=index_dir,
        )


class ReadOnlyIndex:
    """The few read calls `ConceptCache` makes on a diskcache index, without writing.

    Args:
        index_dir: the diskcache folder (`cache.db` inside).

    Raises:
        IndexDamaged: the database cannot be opened or read.
    """

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        self.root = self.index_dir.parent
        db = self.index_dir / "cache.db"
        last: Exception | None = None
        for query in ("mode=ro", "immutable=1"):
            try:
                connection = sqlite3.connect(f"file:{db}?{query}", uri=True)
                connection.execute("SELECT count(*) FROM Cache").fetchone()
            except sqlite3.DatabaseError as exc:
                last = exc
                continue
            self._db = connection
            return
        raise IndexDamaged(self.index_dir, str(last))

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise IndexDamaged(self.index_dir, str(exc)) from None

    def get(self, key: str) -> str | None:
        """The str value stored under the str `key`, or None."""
        rows = self._rows(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1", (key,)
        )
        if not rows:
            return None
        mode, filename, value = rows[0]
        if mode == _MODE_RAW and isinstance(value, str):
            return value
        if mode == _MODE_TEXT and isinstance(filename, str):
            try:
                return (self.index_dir / filename).read_text(encoding="UTF-8")
            except OSError as exc:
                raise IndexDamaged(self.index_dir, str(exc)) from None
        return None

    def iterkeys(self) -> Iterator[Any]:
        """Every key, in the index's order."""
        for (key,) in self._rows("SELECT key FROM Cache WHERE raw = 1 ORDER BY rowid"):
            yield key

    def set(self, key: str, value: str) -> None:
        raise CacheReadOnly(self.root)

    def delete(self, key: str) -> None:
        raise CacheReadOnly(self.root)

    def transact(self) -> Any:
        raise CacheReadOnly(self.root)

    def close(self) -> None:
        self._db.close()
