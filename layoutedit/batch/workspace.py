"""Where a batch works: its output folder, a resumable staging folder beside it, and locks.

    out/                            the dataset, as the last complete run left it
      rows/<id>/                    one folder per done row: source.png, edit PNGs, row.json
      metadata.jsonl coco.json summary.json
      .layoutedit-output.json       the tool's list of the top-level files it wrote
    .out.layoutedit-batch/          the stage: the run in progress (a hidden sibling of out)
      rows/<id>/                    rows done by this run, not yet moved into out
      failed/<id>.json              rows that failed, with the reason
      ranks/rank-<r>.json           each process's tally
      claims/<group>.lock           who runs which scene (flock, held while running it)
      lock                          shared by every working process, exclusive to commit

Every process of a run opens the stage and holds a shared `flock` on `lock` while it works.
A process that has finished takes the lock exclusively only if no other process holds it:
that process, the last one working, merges the rows into `out` (`commit`) and removes the
stage. A process killed in any way drops its locks with it; the rows it finished stay in the
stage, and the next run picks up the rest. Rows are written whole (a folder renamed into
place), so a row is either done, with every file, or not there.

`out` is refused, before any work, when it holds files the tool did not write (anything
that is neither a top-level file the marker lists with its content, nor a row file its
`row.json` lists with its size), unless `overwrite`: then those files stay where they are
and only the files the batch writes are replaced.

Locks are `flock` on the stage's files. They hold between the processes of one machine on
any local file system, and between machines on NFS (v3 with lockd, v4; Linux emulates
flock with POSIX locks there), CephFS, GPFS and Lustre mounted with `-o flock`. Where the
file system refuses locks (ENOLCK, e.g. Lustre without `flock`, some FUSE file systems),
one line says so and the run goes on without them: two processes may then run the same
scene, and the rename of a whole row still keeps every row whole.

Why not `output_guard.OutputStage`, which the other writing commands use: a batch must
resume, so its stage has a fixed name and outlives a process; and a dataset of a million
files cannot list each with its SHA-256 in one marker (capped at 64 MiB, and every start
would hash the whole dataset). The marker (`output_guard.MARKER`, in its format) lists the
top-level files; each row's `row.json` lists the row's files with their sizes and SHA-256.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from layoutedit.atomic import atomic_folder, write_bytes_atomic, write_json_atomic
from layoutedit.errors import UserError
from layoutedit.output_guard import MARKER, check_apart_from_cache

try:  # POSIX; elsewhere a batch runs without cross-process locks
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

ROWS = "rows"
ROW_RECORD = "row.json"
TOP_FILES = ("metadata.jsonl", "coco.json", "summary.json")
_NO_LOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def stage_path(out: Path) -> Path:
    """The stage of output folder `out`: `.<name>.layoutedit-batch` beside it."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.layoutedit-batch"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_json_file(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`, or None when missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _row_files(folder: Path) -> dict[str, int] | None:
    """File name -> size of what a row folder's `row.json` says the tool wrote there."""
    record = read_json_file(folder / ROW_RECORD)
    if record is None or not isinstance(record.get("images"), list):
        return None
    files = {ROW_RECORD: -1}  # row.json itself: any size
    for image in record["images"]:
        if isinstance(image, dict) and isinstance(image.get("file"), str):
            files[image["file"]] = int(image.get("size", -2))
    return files


def user_files(out: Path) -> Iterator[str]:
    """Paths (relative to `out`) of files under `out` that the batch did not write. Lazy."""
    marker = read_json_file(out / MARKER) or {}
    listed = marker.get("files") if marker.get("tool") == "layoutedit" else None
    listed = listed if isinstance(listed, dict) else {}
    for entry in sorted(os.scandir(out), key=lambda e: e.name):
        name = entry.name
        if name == MARKER and listed:
            continue
        if name == ROWS and entry.is_dir(follow_symlinks=False):
            yield from _user_row_files(Path(entry.path))
        elif entry.is_dir(follow_symlinks=False):
            yield from (f"{name}/{p}" for p in _all_files(Path(entry.path)))
        elif name in listed and entry.is_file(follow_symlinks=False):
            if _sha256_file(Path(entry.path)) != listed[name]:
                yield name
        else:
            yield name


def _all_files(folder: Path) -> Iterator[str]:
    for root, _dirs, files in os.walk(folder):
        for f in sorted(files):
            yield (Path(root) / f).relative_to(folder).as_posix()


def _foreign_in_row(folder: Path) -> Iterator[str]:
    """Names in a row folder that its `row.json` does not list with their size."""
    ours = _row_files(folder) or {}
    for child in sorted(os.scandir(folder), key=lambda e: e.name):
        size = ours.get(child.name)
        plain = child.is_file(follow_symlinks=False)
        if not plain or size is None or (size >= 0 and child.stat().st_size != size):
            yield child.name


def _user_row_files(rows: Path) -> Iterator[str]:
    for entry in sorted(os.scandir(rows), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            yield from (f"{ROWS}/{entry.name}/{n}" for n in _foreign_in_row(Path(entry.path)))
        else:
            yield f"{ROWS}/{entry.name}"


def check_out(out: Path, *, overwrite: bool, cache_dir: Path | None = None) -> None:
    """Refuse an output folder the batch must not write, before any work.

    Raises:
        UserError: `out` is a file or lies under one, cannot be written, holds files the
            batch did not write (unless `overwrite`), or is (or lies in) `cache_dir`.
    """
    out = Path(out)
    if cache_dir is not None:
        check_apart_from_cache(out, cache_dir)
    for part in (out, *out.absolute().parents):
        if part.exists() or part.is_symlink():
            if not part.is_dir():
                what = "is a file" if part == out else f"lies under {part}, a file"
                raise UserError(f"output folder {what}; give a folder with --out", path=out)
            if not os.access(part, os.W_OK | os.X_OK):
                raise UserError("output folder cannot be written; give another --out", path=out)
            break
    if overwrite or not out.is_dir():
        return
    first = next(user_files(out), None)
    if first is not None:
        raise UserError(
            f"output folder holds files layoutedit did not write (e.g. {first!r}); give "
            "another --out, or pass --overwrite to write there (only the files the batch "
            "writes are replaced)",
            path=out,
        )


class Workspace:
    """A batch's output folder and stage, opened by one process (see the module docstring).

    Args:
        out: the output folder.
        warn: receives one-line notices (locks not available).
    """

    def __init__(self, out: Path, warn: Callable[[str], None]) -> None:
        self.out = Path(out).absolute()
        self.stage = stage_path(self.out)
        self._warn = warn
        self._fd: int | None = None
        self._locks = fcntl is not None

    # --- locks ----------------------------------------------------------------------------

    def _flock(self, fd: int, how: int) -> bool:
        """flock; False when it would block (LOCK_NB); without lock support, True."""
        if not self._locks:
            return True
        try:
            fcntl.flock(fd, how)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LOCK:
                raise
            self._locks = False
            self._warn(
                f"file locks are not available under {self.stage.parent} ({exc.strerror}); "
                "processes of this batch may run a scene twice"
            )
        return True

    def _lock_is_current(self, fd: int) -> bool:
        """True while the stage's lock file is the one `fd` has open (a commit removes it)."""
        try:
            here, held = os.stat(self.stage / "lock"), os.fstat(fd)
        except FileNotFoundError:
            return False
        return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)

    def open(self, manifest: dict[str, Any]) -> None:
        """Join the run: make or open the stage and hold its lock shared.

        Waits only while another process commits. `manifest` is recorded in the stage.
        """
        for _ in range(1000):
            self.stage.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.stage / "lock", os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # removed by a commit just now
                continue
            self._flock(fd, fcntl.LOCK_SH if fcntl else 0)
            if self._lock_is_current(fd):
                self._fd = fd
                for sub in (ROWS, "failed", "ranks", "claims"):
                    (self.stage / sub).mkdir(exist_ok=True)
                write_json_atomic(self.stage / "batch.json", manifest)
                return
            os.close(fd)
        raise RuntimeError(f"could not open the batch stage {self.stage}")

    def finish(self) -> bool:
        """Leave the run; True when this process is the last one in it and now holds the
        lock exclusively (it must then `commit` or `close`)."""
        fd = self._fd
        if fd is None:
            return False
        if fcntl is None or not self._locks:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        if self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB) and self._lock_is_current(fd):
            return True
        self.close()
        return False

    def abandon(self) -> None:
        """Leave after an error: the stage is removed when no process works in it and it
        holds no finished row (so a failed start leaves nothing behind)."""
        if self.finish():
            empty = not self.accounted()
            self.close()
            if empty:
                shutil.rmtree(self.stage, ignore_errors=True)

    def close(self) -> None:
        """Drop the lock (the kernel drops it too when the process ends)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def claim(self, group: str) -> Iterator[bool]:
        """Hold the claim of a scene group for the block if no other process holds it;
        yields whether it was taken."""
        fd = os.open(self.stage / "claims" / f"{group}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not self._flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if fcntl else 0):
                yield False
                return
            yield True
        finally:
            os.close(fd)  # closing drops the flock

    # --- rows -----------------------------------------------------------------------------

    def record(self, row_id: str) -> tuple[str, dict[str, Any]] | None:
        """Where a row is done (`stage`: by this run; `out`: by an earlier, committed one)
        and its record; None when it is not."""
        for where, root in (("stage", self.stage), ("out", self.out)):
            record = read_json_file(root / ROWS / row_id / ROW_RECORD)
            if record is not None and record.get("status") == "done":
                return where, record
        return None

    def failure(self, row_id: str) -> dict[str, Any] | None:
        """The failure record of a row in this run, if it failed."""
        return read_json_file(self.stage / "failed" / f"{row_id}.json")

    def write_row(self, row_id: str, files: dict[str, bytes], record: dict[str, Any]) -> None:
        """Write a done row whole: its files and `row.json` (`record`), as one rename."""
        with atomic_folder(self.stage / ROWS / row_id) as tmp:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            text = json.dumps(record, indent=1, default=str) + "\n"
            (tmp / ROW_RECORD).write_text(text, encoding="utf-8")
        (self.stage / "failed" / f"{row_id}.json").unlink(missing_ok=True)

    def write_failure(self, row_id: str, record: dict[str, Any]) -> None:
        """Record that a row failed (it is tried again by the next run)."""
        write_json_atomic(self.stage / "failed" / f"{row_id}.json", record)

    def write_rank(self, rank: int, tally: dict[str, Any]) -> None:
        """This process's tally, for the merged summary."""
        write_json_atomic(self.stage / "ranks" / f"rank-{rank}.json", tally)

    def ranks(self, world: int) -> list[dict[str, Any]]:
        """The tallies of ranks 0..world-1 of this run that are present."""
        found = []
        for rank in range(world):
            tally = read_json_file(self.stage / "ranks" / f"rank-{rank}.json")
            if tally is not None and tally.get("world") == world:
                found.append(tally)
        return found

    def accounted(self) -> set[str]:
        """Ids with a row or a failure in the stage (a cheap progress count)."""
        with contextlib.suppress(OSError):
            done = set(os.listdir(self.stage / ROWS))
            failed = {n[:-5] for n in os.listdir(self.stage / "failed") if n.endswith(".json")}
            return {n for n in done | failed if not n.startswith(".")}
        return set()

    # --- the end --------------------------------------------------------------------------

    def commit(self, keep: set[str], top: dict[str, bytes]) -> None:
        """Move this run's rows into the output folder, remove rows of `out` not in `keep`
        (the tool's own only), write the top-level files, then remove the stage.

        Call while holding the lock exclusively (`finish` returned True). Safe to repeat
        after a crash: what is not yet moved is still in the stage.
        """
        rows = self.out / ROWS
        rows.mkdir(parents=True, exist_ok=True)
        for folder in sorted((self.stage / ROWS).iterdir()):
            if folder.name.startswith("."):
                continue
            _place_row(folder, rows / folder.name, self.stage)
        for folder in sorted(rows.iterdir()):
            if folder.name in keep or folder.name.startswith("."):
                continue
            if folder.is_dir() and next(_foreign_in_row(folder), None) is None:
                shutil.rmtree(folder, ignore_errors=True)  # wholly the tool's
        for folder in rows.iterdir():  # leftovers of writers killed mid-write (ours)
            if folder.name.startswith(".") and ".tmp-" in folder.name:
                shutil.rmtree(folder, ignore_errors=True)
        listed = {}
        for name, data in top.items():
            write_bytes_atomic(self.out / name, data)
            listed[name] = sha256_bytes(data)
        write_json_atomic(
            self.out / MARKER,
            {"tool": "layoutedit", "files": listed, "batch": {"rows": ROWS}},
        )
        fd = self._fd
        shutil.rmtree(self.stage, ignore_errors=True)
        if fd is not None:
            self.close()


def _place_row(src: Path, dst: Path, stage: Path) -> None:
    """Put a staged row folder at `dst`: replacing a row folder that is wholly the tool's,
    or moving its files into a folder that also holds a user's files (--overwrite)."""
    if not dst.exists() and not dst.is_symlink():
        os.replace(src, dst)
        return
    if dst.is_dir() and not dst.is_symlink() and next(_foreign_in_row(dst), None) is not None:
        for child in sorted(src.iterdir()):
            os.replace(child, dst / child.name)
        shutil.rmtree(src, ignore_errors=True)
        return
    trash = stage / f".trash-{os.getpid()}-{dst.name}"
    shutil.rmtree(trash, ignore_errors=True)
    if dst.is_dir() and not dst.is_symlink():
        os.replace(dst, trash)
    else:
        dst.unlink()
    os.replace(src, dst)
    shutil.rmtree(trash, ignore_errors=True)


def process_identity() -> dict[str, Any]:
    """Host and process id, for records that say who did what."""
    return {"host": socket.gethostname(), "pid": os.getpid()}
