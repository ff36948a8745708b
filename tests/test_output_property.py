"""A property over output folders (issue #20, item 6): hypothesis draws a folder state (the
user's files, links in and out of it, read-only parts, an earlier output of the tool with
one of its files edited by the user, the folder itself missing, a file or a link) and a
writing command with or without --overwrite. Whatever is drawn:

- the command ends with exit 0 or exit 2 and one line, never a traceback;
- refused (exit 2): nothing anywhere changed;
- without --overwrite: every file, link and mode of the user's is as it was;
- with --overwrite: only the user's entries at the paths the tool writes (or standing
  where its folders go) changed;
- nothing appeared or changed outside the output folder, and no staging folder is left.

Commands: `mask` and `cache export` through the CLI, and the output guard itself writing a
drawn set of files and folders (what learn, edit, demo, run and bench write through).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fuzz_support  # the hypothesis profiles
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.errors import UserError
from layoutedit.output_guard import MARKER, STAGE_PREFIX, read_marker, staged_output
from layoutedit.shapes.world import sample_scene
from layoutedit_cache import ConceptCache

KEY = "3fa9" + "1" * 60
PARTS = ["image.png", "mask.png", "semantic_dict.json", "concept", "a", "notes.txt", MARKER]
KINDS = [
    "file",
    "file",
    "read-only file",
    "link to a file outside",
    "link to a folder outside",
    "link inside",
    "empty folder",
    "read-only folder",
]


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str


@dataclass(frozen=True)
class State:
    out_kind: str  # absent | folder | file | link to a folder
    earlier_output: bool  # the tool wrote OUT before (its marker lists its files)
    edit_tool_file: bool  # ... and the user has since changed one of them
    entries: tuple[Entry, ...]


paths = st.lists(st.sampled_from(PARTS), min_size=1, max_size=2).map("/".join)
states = st.builds(
    State,
    out_kind=st.sampled_from(["absent", "folder", "folder", "folder", "file", "link to a folder"]),
    earlier_output=st.booleans(),
    edit_tool_file=st.booleans(),
    entries=st.lists(st.builds(Entry, paths, st.sampled_from(KINDS)), max_size=5).map(tuple),
)
commands = st.sampled_from(["mask", "export", "guard"])
units = st.lists(
    st.tuples(st.sampled_from(PARTS[:-1]), st.booleans()),
    min_size=1,
    max_size=3,
    unique_by=lambda u: u[0],
)


def snapshot(root: Path) -> dict[str, str]:
    """Relative path -> what it is: a file's SHA-256 and mode, a link's target, a folder's
    mode; links are not followed."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                out[rel] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                out[rel] = f"folder {oct(info.st_mode & 0o777)}"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[rel] = f"file {digest} {oct(info.st_mode & 0o777)}"
    return out


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def build(world: Path, state: State, image: Path) -> tuple[Path, set[str]]:
    """Make the drawn state under `world`; returns OUT and the user's paths (from `world`)."""
    outside = world / "outside"
    _write(outside / "precious.txt", "outside OUT: must never change")
    (outside / "folder").mkdir()
    _write(outside / "folder" / "inner.txt", "also outside")
    out = world / "out"
    user: set[str] = set()
    if state.out_kind == "file":
        _write(out, "OUT is the user's file")
        return out, {"out"}
    real = out
    if state.out_kind == "link to a folder":
        real = outside / "real-out"
        real.mkdir()
        out.symlink_to(real, target_is_directory=True)
    if state.out_kind == "absent" and not state.entries and not state.earlier_output:
        return out, user
    real.mkdir(exist_ok=True)
    if state.earlier_output:
        with staged_output(out, overwrite=False) as stage:
            _write(stage.path / "concept" / "a", "the tool's")
            _write(stage.path / "notes.txt", "the tool's")
        if state.edit_tool_file:
            _write(real / "notes.txt", "the user's edit of the tool's file")
            user.add("notes.txt")
    for entry in state.entries:
        target = real / entry.path
        if any(
            p.is_symlink() or p.is_file()
            for p in [target, *target.parents]
            if real in p.parents or p == target
        ):
            continue  # the path or a folder above it is taken
        if target.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind in ("file", "read-only file"):
            target.write_text(f"the user's {entry.path}")
            if entry.kind == "read-only file":
                target.chmod(0o444)
        elif entry.kind == "link to a file outside":
            target.symlink_to(outside / "precious.txt")
        elif entry.kind == "link to a folder outside":
            target.symlink_to(outside / "folder", target_is_directory=True)
        elif entry.kind == "link inside":
            target.symlink_to(image)
        else:
            target.mkdir()
            if entry.kind == "read-only folder":
                _write(target / "kept.txt", "inside a read-only folder")
                target.chmod(0o555)
                user.add(f"{entry.path}/kept.txt")
            continue  # an empty folder holds nothing of anyone's
        user.add(entry.path)
    return out, user


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, str]]:
    """An image for `mask` with its object names, and a cache with one entry for `export`."""
    folder = tmp_path_factory.mktemp("fixed")
    world = sample_scene(3, 2)
    Image.fromarray(world.image).save(folder / "photo.png")
    cache = ConceptCache(folder / "cache")
    cache.put(KEY, "concept", {"kv": {"w": torch.arange(4.0)}}, {"scene": "s"})
    cache.close()
    yield folder / "photo.png", folder / "cache", ",".join(world.names)


def _unlock(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                path.chmod(0o755)


@settings(max_examples=30 if fuzz_support.PROFILE == "quick" else 600)
@given(state=states, command=commands, overwrite=st.booleans(), written=units)
def test_user_files_survive_every_writing_command(
    fixed: tuple[Path, Path, str], state: State, command: str, overwrite: bool, written: list
) -> None:
    image, cache_dir, names = fixed
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp)
        out, user = build(world, state, image)
        real = out.resolve() if out.is_symlink() else out
        before = snapshot(world)
        flag = ["--overwrite"] if overwrite else []
        export = out / "entry.tar"
        if command == "guard":
            code, err = 0, ""
            try:
                with staged_output(out, overwrite=overwrite) as stage:
                    for name, folder in written:
                        _write(stage.path / name / "x" if folder else stage.path / name, "new")
            except UserError as exc:
                code, err = 2, exc.line() + "\n"
        else:
            if command == "mask":
                args = ["mask", str(image), "--objects", names, "--out", str(out), *flag]
            else:
                args = ["cache", "export", KEY[:6], str(export), *flag]
            result = CliRunner().invoke(app, ["--cache-dir", str(cache_dir), *args])
            code, err = result.exit_code, result.stderr
            assert result.exception is None or isinstance(result.exception, SystemExit), err
        after = snapshot(world)
        _unlock(world)

        assert code in (0, 2), err
        assert "Traceback" not in err
        if code == 2:
            assert len(err.strip().splitlines()) == 1, err
            assert after == before
            return
        inside = real.relative_to(world).as_posix() if real.is_relative_to(world) else None

        # Nothing outside OUT changed or appeared (OUT may be a link into `outside`).
        def outer(snap: dict[str, str]) -> dict[str, str]:
            return {
                k: v
                for k, v in snap.items()
                if inside is None or not (k == inside or k.startswith(inside + "/"))
            }

        assert outer(after) == outer(before)
        tool = {f"{inside}/{p}" for p in [*read_marker(real), MARKER]} if real.is_dir() else set()
        if command == "export":
            tool = {f"{inside}/entry.tar"}
        for rel in (f"{inside}/{u}" for u in user):
            if before.get(rel) == after.get(rel):
                continue
            assert overwrite, f"{rel} changed without --overwrite"
            assert rel in tool or any(t.startswith(rel + "/") for t in tool), f"{rel} changed"
        if real.is_dir():
            assert not [p for p in real.iterdir() if p.name.startswith(STAGE_PREFIX)]
        assert not [p for p in real.parent.iterdir() if STAGE_PREFIX in p.name]
