"""Checking and trimming a cache: what `layoutedit cache verify` and `cache prune` do.

Like diskcache's `check(fix=...)` and `cull`: `verify` reads every artifact of every entry
(size and SHA-256) and, with `fix`, evicts the bad ones; `prune` evicts by last use and by
total size. Both also remove leftovers of interrupted writes (staging and orphan folders),
which are never entries and so never make a cache "bad".
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from layoutedit_cache.artifacts import ArtifactError, check_file
from layoutedit_cache.keys import is_key
from layoutedit_cache.store import (
    CacheEntry,
    ConceptCache,
    IndexDamaged,
    OldFormatError,
    RecordError,
)


@dataclass
class Problem:
    """One entry that cannot be used.

    Attributes:
        key: the entry's key.
        message: one line saying what is wrong.
        stale: the entry was written by another cache format version (unusable, not damaged).
        fixed: it was evicted.
    """

    key: str
    message: str
    stale: bool = False
    fixed: bool = False


@dataclass
class VerifyReport:
    """What `verify` found: entries checked, problems, and leftover folders (removed with fix)."""

    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)
    leftovers_removed: int = 0
    rebuilt: tuple[int, int] | None = None
    """(restored, not restorable) when a damaged index was rebuilt from the artifacts."""

    @property
    def bad(self) -> list[Problem]:
        """Damaged entries still in the cache (stale-format ones are not damage)."""
        return [p for p in self.problems if not p.stale and not p.fixed]

    @property
    def ok(self) -> bool:
        return not self.bad


def check_entry(cache: ConceptCache, key: str) -> tuple[str | None, str | None]:
    """(record text, problem) of one entry; problem is None for a good one.

    An old-format record gives the problem prefixed with "stale: ".
    """
    raw = cache.raw_record(key)
    if raw is None:
        return None, None
    try:
        entry = cache.parse(key, raw)
    except OldFormatError as exc:
        return raw, f"stale: {exc}"
    except RecordError as exc:
        return raw, str(exc)
    assert entry.directory is not None
    for info in entry.artifacts:
        try:
            check_file(entry.directory, info)
        except ArtifactError as exc:
            return raw, str(exc)
    return raw, None


@dataclass
class Listed:
    """One row of `cache ls`: an entry, or a key whose record cannot be read.

    Attributes:
        key: the entry's key.
        entry: the parsed entry; None when the record is damaged or of another format.
        problem: None when the entry looks whole (see `listing`), else one line.
    """

    key: str
    entry: CacheEntry | None
    problem: str | None


def quick_problem(entry: CacheEntry) -> str | None:
    """A missing or wrongly sized artifact file of `entry` (one `stat` per file), or None.

    Cheap enough for a listing; a same-size corruption needs `check_entry`'s SHA-256.
    """
    assert entry.directory is not None
    for info in entry.artifacts:
        try:
            size = (entry.directory / info.filename).stat().st_size
        except FileNotFoundError:
            return f"artifact {info.name!r} is missing"
        except OSError as exc:
            return f"artifact {info.name!r} cannot be read: {exc.strerror}"
        if size != info.size:
            what = "truncated" if size < info.size else "longer than recorded"
            return f"artifact {info.name!r} is {what} ({size} of {info.size} bytes)"
    return None


def listing(cache: ConceptCache) -> list[Listed]:
    """Every key of the index with its entry and a quick check (`quick_problem`): usable
    entries, most recently used first, then those with unreadable or old-format records."""
    good: list[Listed] = []
    broken: list[Listed] = []
    for key in cache.all_keys():
        raw = cache.raw_record(key)
        if raw is None:
            continue
        try:
            entry = cache.parse(key, raw)
        except OldFormatError as exc:
            broken.append(Listed(key, None, f"old format: {exc}"))
            continue
        except RecordError as exc:
            broken.append(Listed(key, None, str(exc)))
            continue
        good.append(Listed(key, entry, quick_problem(entry)))
    good.sort(key=lambda row: row.entry.last_used if row.entry else 0.0, reverse=True)
    return good + broken


def verify(cache: ConceptCache, *, fix: bool = False) -> VerifyReport:
    """Check every entry; with `fix`, evict bad and stale ones and remove leftovers, and
    rebuild a damaged index from the artifacts (`ConceptCache.rebuild_index`).

    Raises:
        IndexDamaged: the index cannot be read and `fix` is off.
        CacheReadOnly: `fix` on a cache folder that cannot be written.
    """
    report = VerifyReport()
    if fix:
        cache.require_writable()
    try:
        keys = cache.all_keys()
    except IndexDamaged:
        if not fix:
            raise
        report.rebuilt = cache.rebuild_index()
        keys = cache.all_keys()
    for key in keys:
        raw, problem = check_entry(cache, key)
        if raw is None:
            continue  # removed meanwhile
        report.checked += 1
        if problem is None:
            continue
        # Confirm under the key's lock that no write replaced the entry while we read it.
        with cache.lock(key):
            raw2, problem = check_entry(cache, key)
            if raw2 is None or problem is None:
                continue
            stale = problem.startswith("stale: ")
            item = Problem(key=key, message=problem.removeprefix("stale: "), stale=stale)
            if fix:
                cache.evict_held(key)
                item.fixed = True
            report.problems.append(item)
    for key, path in list(leftovers(cache)):
        report.leftovers.append(path)
        if fix and remove_leftover(cache, key, path):
            report.leftovers_removed += 1
    return report


@dataclass
class PruneReport:
    """What `prune` removed (or would remove, with `dry_run`) and what it kept."""

    removed: list[CacheEntry] = field(default_factory=list)
    stale_removed: int = 0
    leftovers_removed: int = 0
    kept: int = 0
    kept_size: int = 0

    @property
    def freed(self) -> int:
        return sum(e.size for e in self.removed)


def prune(
    cache: ConceptCache,
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    now: float | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Evict entries not used for `older_than` seconds, then the least recently used ones
    until the artifacts total at most `max_size` bytes. Stale-format entries and leftover
    folders are always removed (unless `dry_run`).
    """
    now = time.time() if now is None else now
    if not dry_run:
        cache.require_writable()
    report = PruneReport()
    entries = sorted(cache.entries(), key=lambda e: e.last_used)  # least recently used first
    doomed: list[CacheEntry] = []
    kept: list[CacheEntry] = []
    for entry in entries:
        if older_than is not None and entry.last_used < now - older_than:
            doomed.append(entry)
        else:
            kept.append(entry)
    if max_size is not None:
        total = sum(e.size for e in kept)
        while kept and total > max_size:
            entry = kept.pop(0)
            total -= entry.size
            doomed.append(entry)
    report.kept = len(kept)
    report.kept_size = sum(e.size for e in kept)
    if dry_run:
        report.removed = doomed
        return report
    for entry in doomed:
        if cache.evict(entry.key, expect=entry):
            report.removed.append(entry)
        else:  # rewritten or used since the listing: it stays
            report.kept += 1
            report.kept_size += entry.size
    for key in cache.all_keys():
        raw = cache.raw_record(key)
        if raw is None:
            continue
        try:
            cache.parse(key, raw)
        except OldFormatError:
            cache.evict(key)
            report.stale_removed += 1
        except RecordError:
            pass  # damaged, not stale: `verify` reports it
    for key, path in list(leftovers(cache)):
        if remove_leftover(cache, key, path):
            report.leftovers_removed += 1
    return report


def leftovers(cache: ConceptCache) -> Iterator[tuple[str, Path]]:
    """(key, path) of staging folders and artifact folders that belong to no entry.

    Includes folders of writes in progress; `remove_leftover` checks under the lock.
    """
    if cache.tmp_dir.is_dir():
        for path in sorted(cache.tmp_dir.iterdir()):
            key = path.name[:64]
            if is_key(key):
                yield key, path
    if cache.artifacts_dir.is_dir():
        for path in sorted(cache.artifacts_dir.iterdir()):
            if is_key(path.name) and cache.raw_record(path.name) is None:
                yield path.name, path


def remove_leftover(cache: ConceptCache, key: str, path: Path) -> bool:
    """Remove a leftover folder unless a write of `key` is in progress; True if removed."""
    with cache.locks.try_hold(key) as free:
        if not free:
            return False  # a write of this key holds the lock: its folders are in use
        if path.parent == cache.artifacts_dir and cache.raw_record(key) is not None:
            return False  # the write finished meanwhile: the folder is an entry's now
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        return True
