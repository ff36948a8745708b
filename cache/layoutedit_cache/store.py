"""The concept cache: an index (diskcache) of entries whose tensors live in safetensors files.

Layout of a cache folder::

    root/index/                     diskcache: key -> entry record (JSON text; nothing pickled)
    root/artifacts/<key>/<name>.safetensors
    root/artifacts/<key>/record.json    a copy of the index record (to rebuild a lost index)
    root/locks/<key>.lock           per-key lock files (filelock; see `locking`)
    root/tmp/                       staging folders of writes in progress

An entry has a kind (`concept`, `inversion` or `prior`), one or more named artifacts (each a
dict of tensors in one safetensors file, its size and SHA-256 in the record) and `meta`, a
JSON-able dict. The CLI shows these meta fields when present: `scene` (str), `objects` (list
of names), `model` (the model spec the user gave).

What survives a crash: a write stages every artifact in `root/tmp`, fsyncs it, removes any old
index entry, renames the folder to `root/artifacts/<key>` and writes the index entry last. A
process killed at any point leaves either the complete new entry or no entry; the staging or
orphan folders it leaves are not entries, and `cache verify --fix` / `cache prune` remove them.

Broken conditions: a cache folder that cannot be written is read through `ReadOnlyIndex`
(reading works; every write raises `CacheReadOnly`, one line). An index that is not a
database raises `IndexDamaged` (one line saying to run `cache verify --fix`), and
`rebuild_index` makes a new one from the `record.json` copies whose artifacts check out.

What happens to a bad entry: every artifact is checked on `get` (size, then SHA-256). A
missing, truncated or corrupted file is reported in one line (the `report` callback), the
entry is evicted and `get` returns None so the caller recomputes it: bad bytes are never
used. An entry written by another cache format version is ignored (never misread) and left
for `cache prune` to remove.

Concurrency: `lock(key)` holds a per-key cross-process lock (see `locking`), so two processes
that learn the same scene at once learn it once: the second waits, then finds the entry.
`put` and eviction take the same lock; `get` reads without it and only locks to evict.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layoutedit.errors import UserError
from layoutedit_cache.artifacts import (
    ArtifactError,
    ArtifactInfo,
    check_artifact_name,
    fsync_dir,
    read_verified,
    serialise,
    write_durable,
)
from layoutedit_cache.entry import CacheEntry
from layoutedit_cache.keys import CACHE_FORMAT_VERSION, check_key, is_key, to_jsonable
from layoutedit_cache.locking import KeyLocks
from layoutedit_cache.readonly import CacheReadOnly, IndexDamaged, ReadOnlyIndex

if TYPE_CHECKING:
    import diskcache
    import torch

_log = logging.getLogger("layoutedit_cache")
_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
__all__ = [
    "KINDS",
    "CacheEntry",
    "CacheReadOnly",
    "ConceptCache",
    "IndexDamaged",
    "OldFormatError",
    "RecordError",
    "check_kind",
]
RECORD_FILE = "record.json"
"""The copy of an entry's index record in its artifact folder."""

KINDS = ("concept", "inversion", "prior")
"""The kinds layoutedit stores; others are accepted (same naming rule) for extensions."""


def check_kind(kind: Any) -> str:
    """`kind` if it is an entry kind (lower-case letters, digits, `_-`, at most 32), else
    ValueError."""
    if not isinstance(kind, str) or not _KIND.match(kind):
        raise ValueError(f"bad entry kind {kind!r}")
    return kind


def _finite_time(value: Any, what: str) -> float:
    """A time in seconds since the epoch: a finite number, not a bool; ValueError else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is not a finite number of seconds ({value!r})")
    return float(value)


class RecordError(Exception):
    """An index record cannot be read; the message is one line."""


class OldFormatError(RecordError):
    """An index record written by another cache format version."""


class ConceptCache:
    """A cache folder. Cheap to construct: nothing is created until the first `put` or `lock`.

    Args:
        root: the cache folder (`AppState.cache_dir`).
        report: called with one line when a bad entry is evicted (default: a logging warning
            on the `layoutedit_cache` logger); the CLI passes its stderr console.
    """

    def __init__(self, root: Path, *, report: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.index_dir = self.root / "index"
        self.artifacts_dir = self.root / "artifacts"
        self.tmp_dir = self.root / "tmp"
        self.report: Callable[[str], None] = report or _log.warning
        self.locks = KeyLocks(self.root / "locks", lambda line: self.report(line))
        self._index: diskcache.Cache | None = None
        self._mutex = threading.Lock()

    # -- index ---------------------------------------------------------------------------
    def _open(self, create: bool) -> Any:
        """The index (a diskcache.Cache, or a `ReadOnlyIndex` when the folder cannot be
        written), or None when there is none and `create` is off.

        Raises:
            CacheReadOnly: `create` on a folder that cannot be written.
            IndexDamaged: the index is not a readable database.
        """
        with self._mutex:
            if self._index is None:
                if not create and not self.index_dir.exists():
                    return None
                if create:
                    self.require_writable()
                if self.index_dir.exists() and not self.index_dir.is_dir():
                    raise IndexDamaged(self.index_dir, "it is a file, not a folder")
                if not self.writable():
                    self._index = ReadOnlyIndex(self.index_dir)
                    return self._index
                import diskcache

                try:
                    # No eviction by diskcache: index entries are tiny, and dropping one
                    # silently would orphan its artifacts. Size limits are ours (`prune`).
                    self._index = diskcache.Cache(str(self.index_dir), eviction_policy="none")
                except sqlite3.DatabaseError as exc:
                    raise IndexDamaged(self.index_dir, str(exc)) from None
            return self._index

    def writable(self) -> bool:
        """Whether this process can write the cache folder (and its parts that exist); a
        folder that does not exist yet is writable if its nearest existing parent is."""
        parts = [self.root, self.index_dir, self.index_dir / "cache.db", self.artifacts_dir]
        parts += [self.tmp_dir, self.root / "locks"]
        existing = [p for p in parts if p.exists()]
        if not existing:
            parent = next((q for q in self.root.parents if q.exists()), None)
            return parent is None or os.access(parent, os.W_OK | os.X_OK)
        return all(os.access(p, os.W_OK) for p in existing)

    def require_writable(self) -> None:
        """CacheReadOnly (one line) unless the cache folder can be written."""
        if not self.writable():
            raise CacheReadOnly(self.root)

    def close(self) -> None:
        """Close the index connection (reopened on next use)."""
        with self._mutex:
            if self._index is not None:
                self._index.close()
                self._index = None

    def __enter__(self) -> ConceptCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw_record(self, key: str) -> str | None:
        """The index record text of `key`, or None (IndexDamaged if it cannot be read)."""
        index = self._open(create=False)
        if index is None:
            return None
        try:
            value = index.get(key)
        except sqlite3.DatabaseError as exc:
            raise IndexDamaged(self.index_dir, str(exc)) from None
        return value if isinstance(value, str) else None

    def all_keys(self) -> list[str]:
        """Every key in the index, sorted (entries of any format); IndexDamaged if the
        index cannot be read."""
        index = self._open(create=False)
        if index is None:
            return []
        try:
            return sorted(k for k in index.iterkeys() if isinstance(k, str))
        except sqlite3.DatabaseError as exc:
            raise IndexDamaged(self.index_dir, str(exc)) from None

    def artifact_dir(self, key: str) -> Path:
        return self.artifacts_dir / check_key(key)

    def parse(self, key: str, raw: str) -> CacheEntry:
        """An entry from its record text; RecordError / OldFormatError if it cannot be used."""
        try:
            data = json.loads(raw)
            fmt = data["format"]
            if fmt != CACHE_FORMAT_VERSION:
                raise OldFormatError(
                    f"written by cache format {fmt}; this version reads {CACHE_FORMAT_VERSION}"
                )
            if data["key"] != key:
                raise RecordError("index record belongs to another key")
            artifacts = tuple(ArtifactInfo.from_json(a) for a in data["artifacts"])
            return CacheEntry(
                key=key,
                kind=check_kind(data["kind"]),
                meta=dict(data["meta"]),
                created=_finite_time(data["created"], "created"),
                last_used=_finite_time(data["last_used"], "last used"),
                size=sum(a.size for a in artifacts),
                artifacts=artifacts,
                directory=self.artifact_dir(key),
                record_id=str(data.get("id", "")),
            )
        except RecordError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(f"index record is unreadable ({exc})") from None

    def entries(self) -> list[CacheEntry]:
        """Usable-looking entries (current format, readable record), newest use first.

        Artifacts are not verified here; `get` and `maintenance.verify` do that.
        """
        out = []
        for key in self.all_keys():
            raw = self.raw_record(key)
            if raw is None:
                continue
            with contextlib.suppress(RecordError):
                out.append(self.parse(key, raw))
        return sorted(out, key=lambda e: e.last_used, reverse=True)

    def total_size(self) -> int:
        """Bytes of all artifact files of usable entries."""
        return sum(e.size for e in self.entries())

    # -- the API -------------------------------------------------------------------------
    def lock(
        self, key: str, *, on_wait: Callable[[], None] | None = None
    ) -> AbstractContextManager[None]:
        """Hold the cross-process lock of `key` for a `with` block (re-entrant in a thread).

        `on_wait()` is called once if another process holds it and we have to wait (e.g. to
        print "another process is learning this scene; waiting").
        """
        return self.locks.hold(check_key(key), on_wait)

    def get(self, key: str) -> CacheEntry | None:
        """The entry of `key` with every artifact verified, or None.

        A bad entry is reported (one line), evicted, and None returned; an entry of another
        format version is ignored. A hit updates `last_used`.
        """
        check_key(key)
        for _ in range(3):
            raw = self.raw_record(key)
            if raw is None:
                return None
            try:
                entry = self.parse(key, raw)
                assert entry.directory is not None
                entry._blobs = {a.name: read_verified(entry.directory, a) for a in entry.artifacts}
            except OldFormatError:
                return None
            except (RecordError, ArtifactError) as exc:
                problem = str(exc)
            else:
                self._touch(key, raw, entry)
                return entry
            if not self.writable():
                self.report(
                    f"cache entry {key[:12]}: {problem}; not used (the cache folder is "
                    "read-only, so it stays)"
                )
                return None
            # Evict only if the record is still the one we checked: a `put` may have replaced it
            # while we read, and then the new entry deserves its own check.
            with self.lock(key):
                if self.raw_record(key) != raw:
                    continue
                self.evict_held(key)
            self.report(f"cache entry {key[:12]}: {problem}; evicted, it will be recomputed")
            return None
        return None

    def put(
        self,
        key: str,
        kind: str,
        tensors: Mapping[str, Mapping[str, torch.Tensor]],
        meta: Mapping[str, Any],
    ) -> CacheEntry:
        """Store an entry atomically, replacing any entry of `key`.

        Args:
            key: from `keys.concept_key` / `inversion_key` / `prior_key`.
            kind: "concept", "inversion" or "prior".
            tensors: artifact name -> {tensor name -> tensor}; each artifact becomes one
                safetensors file (tensors are stored as CPU copies).
            meta: JSON-able dict (paths and tuples are converted); see the module docstring.

        Raises:
            CacheReadOnly: the cache folder cannot be written.
        """
        self.require_writable()
        blobs = {check_artifact_name(name): serialise(group) for name, group in tensors.items()}
        return self.put_blobs(key, kind, blobs, meta)

    def put_blobs(
        self,
        key: str,
        kind: str,
        blobs: Mapping[str, bytes],
        meta: Mapping[str, Any],
        *,
        created: float | None = None,
    ) -> CacheEntry:
        """`put` for artifacts already serialised as safetensors bytes (used by import).

        Raises:
            CacheReadOnly: the cache folder cannot be written.
            ValueError: a bad key, kind, time or artifact name.
        """
        check_key(key)
        check_kind(kind)
        if not blobs:
            raise ValueError("an entry needs at least one artifact")
        if created is not None:
            _finite_time(created, "created")
        self.require_writable()
        infos = tuple(ArtifactInfo.of_bytes(name, blob) for name, blob in blobs.items())
        now = time.time()
        record = {
            "format": CACHE_FORMAT_VERSION,
            "key": key,
            "kind": kind,
            "meta": to_jsonable(dict(meta)),
            "created": now if created is None else float(created),
            "last_used": now,
            "artifacts": [a.to_json() for a in infos],
            "id": secrets.token_hex(8),
        }
        text = json.dumps(record, sort_keys=True, allow_nan=False)
        try:
            self._store(key, infos, blobs, text)
        except PermissionError:
            raise CacheReadOnly(self.root) from None
        return self.parse(key, text)

    def _store(
        self, key: str, infos: tuple[ArtifactInfo, ...], blobs: Mapping[str, bytes], text: str
    ) -> None:
        """The write of `put_blobs`, under the key's lock."""
        with self.lock(key):
            index = self._open(create=True)
            assert index is not None
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            stage = self.tmp_dir / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
            trash: Path | None = None
            stage.mkdir()
            try:
                for info in infos:
                    write_durable(stage / info.filename, blobs[info.name])
                write_durable(stage / RECORD_FILE, text.encode("utf-8"))
                fsync_dir(stage)
                # From here a crash must leave no entry rather than a record over other files:
                # drop the old record first, swap the folders, write the new record last.
                index.delete(key)
                final = self.artifact_dir(key)
                if final.exists():
                    trash = self.tmp_dir / f"{key}.old.{secrets.token_hex(4)}"
                    os.replace(final, trash)
                self.artifacts_dir.mkdir(parents=True, exist_ok=True)
                os.replace(stage, final)
                fsync_dir(self.artifacts_dir)
                index.set(key, text)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
                if trash is not None:
                    shutil.rmtree(trash, ignore_errors=True)

    def rebuild_index(self) -> tuple[int, int]:
        """Replace a damaged index by one made from the entries' `record.json` copies.

        Every artifact of an entry is checked (size and SHA-256) before its record goes back
        into the index; entries whose copy is missing (written before copies were kept),
        unreadable or of another format are not restored, and their folders become the
        leftovers that `cache verify --fix` and `cache prune` remove.

        Returns:
            (entries restored, entry folders that could not be restored).

        Raises:
            CacheReadOnly: the cache folder cannot be written.
        """
        from layoutedit_cache.artifacts import check_file
        from layoutedit_cache.keys import is_key

        self.require_writable()
        self.close()
        if self.index_dir.exists() or self.index_dir.is_symlink():
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            trash = self.tmp_dir / f"index.damaged.{secrets.token_hex(4)}"
            os.replace(self.index_dir, trash)
            if trash.is_dir() and not trash.is_symlink():
                shutil.rmtree(trash, ignore_errors=True)
            else:
                trash.unlink(missing_ok=True)
        index = self._open(create=True)
        restored = lost = 0
        folders = sorted(self.artifacts_dir.iterdir()) if self.artifacts_dir.is_dir() else []
        for folder in folders:
            if not is_key(folder.name) or not folder.is_dir():
                continue
            try:
                text = (folder / RECORD_FILE).read_text(encoding="utf-8")
                entry = self.parse(folder.name, text)
                for info in entry.artifacts:
                    check_file(folder, info)
            except (OSError, UnicodeDecodeError, RecordError, ArtifactError):
                lost += 1
                continue
            index.set(folder.name, text)
            restored += 1
        return restored, lost

    def resolve(self, prefix: str) -> str:
        """The one key starting with `prefix` (case-insensitive); UserError if none or several."""
        wanted = prefix.strip().lower()
        if not wanted or not re.fullmatch(r"[0-9a-f]{1,64}", wanted):
            raise UserError(f"{prefix!r} is not a cache key or key prefix (hex digits)")
        if is_key(wanted) and self.raw_record(wanted) is not None:
            return wanted
        matches = [k for k in self.all_keys() if k.startswith(wanted)]
        if not matches:
            raise UserError(f"no cache entry starts with {wanted!r} (see `layoutedit cache ls`)")
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches[:5])
            raise UserError(
                f"{wanted!r} matches {len(matches)} cache entries ({shown}); give more digits"
            )
        return matches[0]

    def evict(self, key: str, *, expect: CacheEntry | None = None) -> bool:
        """Remove the entry of `key` and its files; False if there was none.

        With `expect`, only if the entry is still that one, unused since (same write, same
        `last_used`): maintenance that decided on a listing never removes a newer entry.

        Raises:
            CacheReadOnly: the cache folder cannot be written.
        """
        self.require_writable()
        with self.lock(key):
            raw = self.raw_record(key)
            if expect is not None:
                try:
                    now = self.parse(key, raw) if raw is not None else None
                except RecordError:
                    now = None
                if now is None or (now.record_id, now.last_used) != (
                    expect.record_id,
                    expect.last_used,
                ):
                    return False
            existed = raw is not None or self.artifact_dir(key).exists()
            self.evict_held(key)
        return existed

    def evict_held(self, key: str) -> None:
        """`evict` for a caller that already holds the lock of `key`."""
        index = self._open(create=False)
        if index is not None:
            index.delete(key)  # record first: a crash mid-way leaves an orphan folder, not an entry
        folder = self.artifact_dir(key)
        if folder.exists():
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            trash = self.tmp_dir / f"{key}.old.{secrets.token_hex(4)}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def _touch(self, key: str, raw: str, entry: CacheEntry) -> None:
        """Record a hit's time; best effort (a read-only cache still serves hits)."""
        now = time.time()
        try:
            data = json.loads(raw)
            data["last_used"] = now
            index = self._open(create=False)
            if index is None:
                return
            with index.transact():
                if index.get(key) == raw:
                    index.set(key, json.dumps(data, sort_keys=True))
            entry.last_used = now
        except Exception as exc:  # sqlite errors on a read-only cache, mostly
            _log.debug("could not update last_used of %s: %s", key[:12], exc)
