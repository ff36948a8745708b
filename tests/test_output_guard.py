"""`layoutedit.output_guard`: what the user owns in an output folder is never replaced or
removed without --overwrite, and never written through; outputs arrive whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from layoutedit.errors import UserError
from layoutedit.output_guard import (
    MARKER,
    check_name,
    check_output,
    staged_output,
    user_entries,
)


def _write(stage_path: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = stage_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> text of every file under `root` but the marker (links as `->`)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = f"-> {os.readlink(path)}"
        elif path.is_file() and path.name != MARKER:
            out[rel] = path.read_text()
    return out


def _run(root: Path, files: dict[str, str], *, overwrite: bool = False) -> None:
    with staged_output(root, overwrite=overwrite) as stage:
        _write(stage.path, files)


def test_a_new_folder_appears_whole_with_the_marker(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _run(root, {"a/x.txt": "1", "b.txt": "2"})
    assert _tree(root) == {"a/x.txt": "1", "b.txt": "2"}
    marker = json.loads((root / MARKER).read_text())
    assert sorted(marker["files"]) == ["a/x.txt", "b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left


def test_its_own_output_is_replaced_without_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _run(root, {"a/x.txt": "1", "a/y.txt": "old", "b.txt": "2"})
    _run(root, {"a/x.txt": "new"})
    # Unit a/ is replaced (y.txt was the tool's and is not written now); unit b.txt stays.
    assert _tree(root) == {"a/x.txt": "new", "b.txt": "2"}
    assert next(user_entries(root), None) is None
    assert [p.name for p in root.iterdir() if p.name.startswith(".layoutedit-stage")] == []


@pytest.mark.parametrize(
    "user_file", ["notes.txt", "a/notes.txt", "a/x.txt", "deep/er/photo.png", MARKER]
)
def test_a_user_file_anywhere_is_refused_before_any_work(tmp_path: Path, user_file: str) -> None:
    root = tmp_path / "out"
    _run(root, {"a/x.txt": "1"})
    _write(root, {user_file: "mine"})  # a/x.txt: the user edited the tool's file
    before = _tree(root)
    with pytest.raises(UserError, match="did not write") as err:
        check_output(root, overwrite=False)
    assert "--overwrite" in err.value.line() and "\n" not in err.value.line()
    with pytest.raises(UserError):
        _run(root, {"a/x.txt": "2"})
    assert _tree(root) == before


def test_overwrite_replaces_only_what_the_tool_writes(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _write(root, {"notes.txt": "keep", "a/mine.txt": "keep too", "b.txt": "user's b"})
    _run(root, {"a/x.txt": "1", "b.txt": "tool's b"}, overwrite=True)
    assert _tree(root) == {
        "notes.txt": "keep",
        "a/mine.txt": "keep too",
        "a/x.txt": "1",
        "b.txt": "tool's b",  # at a path the tool writes: replaced, as asked
    }
    # The user's files stay the user's: a plain rerun is refused, a rerun with overwrite
    # replaces the tool's files and keeps them.
    with pytest.raises(UserError):
        check_output(root, overwrite=False)
    _run(root, {"a/z.txt": "2"}, overwrite=True)
    assert _tree(root) == {
        "notes.txt": "keep",
        "a/mine.txt": "keep too",
        "a/z.txt": "2",
        "b.txt": "tool's b",
    }


def test_links_are_replaced_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    _write(outside, {"precious.txt": "do not touch"})
    root = tmp_path / "out"
    root.mkdir()
    (root / "a").symlink_to(outside, target_is_directory=True)
    (root / "b.txt").symlink_to(outside / "precious.txt")
    with pytest.raises(UserError):
        check_output(root, overwrite=False)
    _run(root, {"a/precious.txt": "tool", "b.txt": "tool"}, overwrite=True)
    assert _tree(outside) == {"precious.txt": "do not touch"}
    assert not (root / "a").is_symlink() and (root / "a" / "precious.txt").read_text() == "tool"
    assert not (root / "b.txt").is_symlink()


def test_a_user_folder_where_a_file_goes_is_never_removed(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _write(root, {"a/b.txt/inside.txt": "mine"})
    with pytest.raises(UserError, match="stands where"):
        _run(root, {"a/b.txt": "tool", "c.txt": "tool"}, overwrite=True)
    assert _tree(root) == {"a/b.txt/inside.txt": "mine"}  # nothing moved, c.txt included


def test_an_error_or_interrupt_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    root = tmp_path / "out"
    for error in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(error), staged_output(root, overwrite=False) as stage:
            _write(stage.path, {"a.txt": "half"})
            raise error()
        assert not root.exists() and list(tmp_path.iterdir()) == []
    _run(root, {"a.txt": "1"})
    with pytest.raises(KeyboardInterrupt), staged_output(root, overwrite=False) as stage:
        _write(stage.path, {"a.txt": "half"})
        raise KeyboardInterrupt
    assert _tree(root) == {"a.txt": "1"} and sorted(p.name for p in root.iterdir()) == [
        MARKER,
        "a.txt",
    ]


def test_a_file_or_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("mine")
    for root in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(UserError, match="file; give a folder"):
            check_output(root, overwrite=True)
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "a\\b", "a\nb", "x" * 201])
def test_names_are_one_plain_path_component(name: str) -> None:
    with pytest.raises(UserError, match="cannot be a file name"):
        check_name(name, "step name")


def test_ordinary_names_pass() -> None:
    for name in ("layout1", "step-01-bigger pot", "猫", "a..b", ".hidden"):
        assert check_name(name, "step name") == name


def test_a_killed_writers_staging_folder_is_cleared(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(done.stdout)  # a process that has ended
    root = tmp_path / "out"
    _run(root, {"a.txt": "1"})
    left = [root / f".layoutedit-stage-{dead}-x1", tmp_path / f".out.layoutedit-stage-{dead}-x2"]
    for folder in left:
        _write(folder, {"half.png": "half written"})
    mine = root / f".layoutedit-stage-{os.getpid()}-x3"  # a live writer's (this process)
    _write(mine, {"busy.png": "being written"})
    _run(root, {"a.txt": "2"})
    assert not left[0].exists() and mine.exists()
    shutil.rmtree(root)
    _run(root, {"b.txt": "1"})  # made anew beside the parent: that leftover goes too
    assert not left[1].exists() and _tree(root) == {"b.txt": "1"}


@pytest.mark.parametrize("where", ["same", "inside"])
def test_an_output_folder_in_the_cache_folder_is_refused_before_any_work(
    tmp_path: Path, where: str
) -> None:
    cache = tmp_path / "cache"
    out = {"same": cache, "inside": cache / "out"}[where]
    with pytest.raises(UserError, match="lies in the cache folder"):
        check_output(out, overwrite=True, cache_dir=cache)
    check_output(tmp_path / "out", overwrite=False, cache_dir=cache)  # beside it: fine


def test_bench_with_its_output_in_the_cache_folder_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from layoutedit.cli.app import app

    cache = tmp_path / "c"
    result = CliRunner().invoke(
        app, ["--cache-dir", str(cache), "bench", "--variants", "paste", "--out", str(cache)]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "lies in the cache folder" in lines[0], result.stderr
    assert not (cache / "bench.json").exists()
