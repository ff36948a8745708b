"""Output folders: never destroy or overwrite what the tool did not write.

Every command that writes a folder (learn --out, edit, demo, run, bench, mask) calls
`check_output` before any work and writes through `staged_output`:

- The marker `OUT/.layoutedit-output.json` lists every file the tool wrote under OUT with its
  SHA-256. A listed file that is unchanged is the tool's; everything else under OUT (other
  files, links, a listed file the user has since edited) is the user's.
- `check_output` refuses, with a `UserError` (one line, exit 2), an OUT that is a file, lies
  under a file, cannot be written, or holds anything of the user's, unless `overwrite`. It
  stops at the first user file it meets, so a large folder costs little to refuse.
- `staged_output` builds the outputs in a staging folder (a hidden sibling of a new OUT, or a
  hidden folder inside an existing one: the same file system either way) and renames them
  into place at the end. An error or an interrupt removes the staging folder: nothing is
  half written. Each top-level entry a command writes (`concept/`, `layout1/`, `bench.json`)
  is a unit. A unit that is wholly the tool's is replaced by renames; with `overwrite`, a
  unit that holds user files is merged into, file by file: the user's files at other paths
  stay, those at the paths the tool writes are replaced.
- Links under OUT are never followed: a link where the tool writes is replaced (with
  `overwrite`), never written through. A user's folder where the tool writes a file is
  never removed, `overwrite` or not.
- Names that come from users (layout file stems, script step names) become one path
  component each (`check_name`), so nothing lands outside OUT.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from layoutedit.errors import UserError

MARKER = ".layoutedit-output.json"
"""The tool's list of the files it wrote under an output folder."""
STAGE_PREFIX = ".layoutedit-stage-"
"""Staging and trash folders inside an output folder (never the user's)."""
_MARKER_TOOL = "layoutedit"
_CHUNK = 1 << 20
_MAX_NAME = 200


def check_name(name: str, what: str) -> str:
    """`name` if it is usable as one file or folder name under an output folder.

    Args:
        name: a name from the user (a layout's stem, a script step's name).
        what: what it is, for the message (`layout name`, `step name`).

    Raises:
        UserError: empty, `.` or `..`, holding a path separator, a control character, or
            longer than 200 characters.
    """
    bad = (
        not name
        or name in (".", "..")
        or any(c in name for c in "/\\")
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
        or len(name) > _MAX_NAME
    )
    if bad:
        raise UserError(
            f"{what} {name!r} cannot be a file name: give a name without '/', '\\', control "
            f"characters, not '.' or '..', at most {_MAX_NAME} characters"
        )
    return name


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _load_marker(root: Path) -> dict[str, str] | None:
    """The marker's files (relative path -> SHA-256); {} when there is no marker; None when
    something else stands at its name (a link, a folder, JSON that is not the tool's)."""
    path = root / MARKER
    try:
        info = path.lstat()
    except FileNotFoundError:
        return {}
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > 64 << 20:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("tool") != _MARKER_TOOL
        or not isinstance(files, dict)
    ):
        return None
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def read_marker(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of the files the tool recorded under `root`; empty when the
    marker is missing or is not the tool's (then nothing there counts as the tool's)."""
    return _load_marker(root) or {}


def _write_marker(root: Path, files: dict[str, str]) -> None:
    from layoutedit.atomic import write_json_atomic

    payload = {"tool": _MARKER_TOOL, "files": dict(sorted(files.items()))}
    write_json_atomic(root / MARKER, payload)


def _is_ours(path: Path, rel: str, ours: dict[str, str]) -> bool:
    """A regular file (not a link) the marker lists with its current content."""
    digest = ours.get(rel)
    if digest is None:
        return False
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        return sha256_file(path) == digest
    except OSError:
        return False


def _entries(folder: Path, base: Path) -> Iterator[tuple[Path, str, bool]]:
    """(path, path relative to `base` with '/', is a real folder) of everything under
    `folder`, links not followed; staging folders and the marker are skipped."""
    try:
        children = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for child in children:
        path = Path(child.path)
        rel = path.relative_to(base).as_posix()
        if folder == base and (child.name == MARKER or child.name.startswith(STAGE_PREFIX)):
            continue
        real_dir = child.is_dir(follow_symlinks=False)
        yield path, rel, real_dir
        if real_dir:
            yield from _entries(path, base)


def user_entries(root: Path, under: Path | None = None) -> Iterator[str]:
    """Relative paths (from `root`) of what under `under` (default: all of `root`) is the
    user's: files the marker does not list unchanged, links, special files, and a file at
    the marker's name that is not the tool's. Empty folders are nobody's. Lazy: a caller
    that refuses stops at the first."""
    ours = read_marker(root)
    if under is None:
        if _load_marker(root) is None:
            yield MARKER
        start = root
    else:
        start = under
        if start.is_symlink() or not start.is_dir():
            if start.is_symlink() or start.exists():
                rel = start.relative_to(root).as_posix()
                if not _is_ours(start, rel, ours):
                    yield rel
            return
    for path, rel, real_dir in _entries(start, root):
        if not real_dir and not _is_ours(path, rel, ours):
            yield rel


def _nearest_existing(path: Path) -> Path:
    for part in (path, *path.parents):
        if part.exists() or part.is_symlink():
            return part
    return Path(path.anchor or ".")


def check_apart_from_cache(root: Path, cache_dir: Path, option: str = "--out") -> None:
    """Refuse an output folder that is the cache folder or lies in it: the cache writes
    there during the run, so the folder would hold files the tool did not write for its
    output, found only when the results are written at the end.

    Raises:
        UserError: `root` is `cache_dir` or lies in it.
    """
    out_abs, cache_abs = Path(root).resolve(), Path(cache_dir).resolve()
    if out_abs == cache_abs or cache_abs in out_abs.parents:
        raise UserError(
            f"output folder is or lies in the cache folder {cache_abs}; give another {option}",
            path=root,
        )


def check_output(
    root: Path, *, overwrite: bool, option: str = "--out", cache_dir: Path | None = None
) -> None:
    """Refuse an output folder the command must not write, before any work.

    Args:
        root: the output folder (need not exist).
        overwrite: the user allowed writing beside (and over) files the tool did not write.
        option: how the user named the folder, for the message (`--out`).
        cache_dir: the cache folder of the run, or None (`check_apart_from_cache`).

    Raises:
        UserError: `root` is a file or lies under one; it or the folder it would be made in
            cannot be written; it holds files the tool did not write and `overwrite` is off;
            it is `cache_dir` or lies in it.
    """
    root = Path(root)
    if cache_dir is not None:
        check_apart_from_cache(root, cache_dir, option)
    existing = _nearest_existing(root.absolute())
    if existing.is_symlink() and not existing.exists():
        raise UserError(f"output folder is a broken link; give another {option}", path=root)
    if not existing.is_dir():
        what = "is a file" if existing == root.absolute() else f"lies under {existing}, a file"
        raise UserError(f"output folder {what}; give a folder with {option}", path=root)
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == root.absolute() else f" ({existing} is read-only)"
        raise UserError(f"output folder cannot be written{where}; give another {option}", path=root)
    if existing != root.absolute():
        return
    _check_marker_place(root)
    if overwrite:
        return
    first = next(user_entries(root), None)
    if first is not None:
        raise UserError(
            f"output folder holds files layoutedit did not write (e.g. {first!r}); give "
            f"another {option}, or pass --overwrite to write there (only the files layoutedit "
            "writes are replaced)",
            path=root,
        )


def _check_marker_place(root: Path) -> None:
    """A folder at the marker's name is the user's: it is never replaced, so refuse."""
    marker = root / MARKER
    if marker.is_dir() and not marker.is_symlink():
        raise UserError(
            f"output folder holds a folder named {MARKER}, where layoutedit keeps the list of "
            "the files it wrote; move it away",
            path=root,
        )


class OutputStage:
    """A staging folder for one command's outputs under `root` (see the module docstring).

    Write each unit under `path` (`unit(name)` checks the name), then `commit()`.
    """

    def __init__(self, root: Path, *, overwrite: bool, option: str = "--out") -> None:
        self.root = Path(root)
        self.overwrite = overwrite
        self.option = option
        self._target = self.root.resolve()
        if self._target.is_dir():
            parent, prefix = self._target, STAGE_PREFIX
        else:
            parent, prefix = self._target.parent, f".{self._target.name}{STAGE_PREFIX}"
            parent.mkdir(parents=True, exist_ok=True)
        _clear_dead_stages(parent, prefix)
        self.path = Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{os.getpid()}-"))
        os.chmod(self.path, 0o777 & ~_umask())
        self.committed = False
        self._new: dict[str, str] = {}

    def unit(self, name: str, what: str = "output name") -> Path:
        """Where to write the top-level entry `name` (a file or a folder) of the output."""
        return self.path / check_name(name, what)

    def final(self, staged: Path) -> Path:
        """The path a staged file will have once committed (for records that name it)."""
        return self.root / Path(staged).relative_to(self.path)

    def staged(self, final: Path) -> Path:
        """The staged path of a final output path (to read back what was written)."""
        return self.path / Path(final).relative_to(self.root)

    def discard(self) -> None:
        """Remove the staging folder and everything in it (after an error or interrupt)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def adopt(self, other: Path) -> None:
        """Move the units staged in another stage folder `other` (another process's share of
        the same run) into this one, then remove `other`."""
        for child in sorted(Path(other).iterdir()):
            destination = self.path / child.name
            if destination.exists():
                _merge_tree(child, destination)
            else:
                os.replace(child, destination)
        shutil.rmtree(other, ignore_errors=True)

    def commit(self) -> None:
        """Move every staged unit into `root` and record the files in the marker.

        Everything is checked before the first rename, so a refusal here moves nothing.

        Raises:
            UserError: (rechecked here) a unit holds user files and `overwrite` is off; a
                user's folder stands where a file is written; a rename fails.
        """
        self._new = {
            rel: sha256_file(path)
            for path, rel, real_dir in _entries(self.path, self.path)
            if not real_dir
        }
        target = self._target
        try:
            fresh = not target.exists() and not target.is_symlink()
            if fresh and self.path.parent == target.parent:
                # A new folder: the staging folder becomes it in one rename.
                _write_marker(self.path, self._new)
                os.rename(self.path, target)
                self.committed = True
                return
            self._commit_into(target)
        except OSError as exc:
            raise UserError(
                f"cannot write the output: {exc.strerror or exc}", path=self.root
            ) from None

    def _commit_into(self, target: Path) -> None:
        if target.is_symlink() or not target.is_dir():
            raise UserError(
                f"output folder is no longer a folder; give a folder with {self.option}",
                path=self.root,
            )
        _check_marker_place(target)
        ours = read_marker(target)
        units = sorted(p.name for p in self.path.iterdir())
        for name in units:
            if not self.overwrite:
                first = next(user_entries(target, target / name), None)
                if first is not None:
                    raise UserError(
                        f"output holds {first!r}, which layoutedit did not write; pass "
                        "--overwrite to replace it",
                        path=self.root,
                    )
            self._preflight(self.path / name, target / name, name)
        for name in units:
            self._place(self.path / name, target / name, ours)
        kept = {
            rel: digest
            for rel, digest in ours.items()
            if rel.split("/", 1)[0] not in units and (target / rel).is_file()
        }
        _write_marker(target, {**kept, **self._new})
        self.committed = True
        self.discard()

    def _preflight(self, src: Path, dst: Path, rel: str) -> None:
        """Refuse a merge that would have to remove a user's folder to put a file there."""
        if not dst.is_dir() or dst.is_symlink():
            return
        if src.is_dir():
            for child in src.iterdir():
                self._preflight(child, dst / child.name, f"{rel}/{child.name}")
        elif next(user_entries(self._target, dst), None) is not None:
            raise UserError(
                f"a folder layoutedit did not write stands where it writes the file {rel!r}; "
                "move it away",
                path=self.root,
            )

    def _place(self, src: Path, dst: Path, ours: dict[str, str]) -> None:
        """Move the staged `src` to `dst`, replacing the tool's files and (with overwrite,
        checked before) the user's at the same paths; other user files stay."""
        if not dst.exists() and not dst.is_symlink():
            os.replace(src, dst)
            return
        if next(user_entries(self._target, dst), None) is None:
            _replace(src, dst, self._target)  # wholly the tool's (or empty)
            return
        if src.is_dir() and dst.is_dir() and not dst.is_symlink():
            for child in sorted(src.iterdir()):
                self._place(child, dst / child.name, ours)
            self._drop_stale(dst, ours)
            return
        _replace(src, dst, self._target)  # a user's file or link where the tool writes

    def _drop_stale(self, folder: Path, ours: dict[str, str]) -> None:
        """Remove the tool's earlier, unchanged files under `folder` that the new output lacks."""
        for path, rel, real_dir in list(_entries(folder, self._target)):
            if not real_dir and rel not in self._new and _is_ours(path, rel, ours):
                with contextlib.suppress(OSError):
                    path.unlink()


def relocate_json(stage: OutputStage, file: Path) -> None:
    """Rewrite the staged JSON `file` so that every string naming a staged path names its
    final path (records written while staging, such as an edit's scene files)."""
    from layoutedit.atomic import write_json_atomic

    staged = str(stage.path)
    final = str(stage.root)

    def fix(value: Any) -> Any:
        if isinstance(value, str) and (value == staged or value.startswith(staged + os.sep)):
            return final + value[len(staged) :]
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    write_json_atomic(file, fix(json.loads(file.read_text(encoding="utf-8"))))


def _clear_dead_stages(parent: Path, prefix: str) -> None:
    """Remove staging folders left by a process that was killed (SIGKILL, a power cut): their
    names carry the writer's process id, and no process of that id runs here now."""
    with contextlib.suppress(OSError):
        for child in parent.iterdir():
            if not child.name.startswith(prefix) or not child.is_dir() or child.is_symlink():
                continue
            pid = child.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(child, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _replace(src: Path, dst: Path, root: Path) -> None:
    """Put `src` where `dst` is: a folder by two renames (the old one moved aside in `root`,
    then removed), a file or link by one. `dst` holds nothing of the user's but a file or
    link at its own name."""
    if dst.is_dir() and not dst.is_symlink():
        trash = root / f"{STAGE_PREFIX}old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(dst, trash)
        try:
            os.replace(src, dst)
        except BaseException:
            os.replace(trash, dst)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return
    if src.is_dir():
        dst.unlink()
    os.replace(src, dst)


def _merge_tree(src: Path, dst: Path) -> None:
    """Move the files of `src` into the existing folder `dst` (two stages of one run)."""
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge_tree(child, target)
        else:
            os.replace(child, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def staged_output(root: Path, *, overwrite: bool, option: str = "--out") -> Iterator[OutputStage]:
    """Check `root` (`check_output`), stage its outputs, commit them when the block ends.

    Usage: `with staged_output(out, overwrite=False) as stage: write(stage.unit("layout1"))`.
    When the block raises (Ctrl-C included) nothing reaches `root`.
    """
    check_output(root, overwrite=overwrite, option=option)
    stage = OutputStage(root, overwrite=overwrite, option=option)
    try:
        yield stage
        stage.commit()
    finally:
        if not stage.committed:
            stage.discard()
