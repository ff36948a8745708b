"""Atomic writers: the new content or the old, never a mix, and no temporaries left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from layoutedit.atomic import (
    atomic_folder,
    write_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_png_atomic,
    write_safetensors_atomic,
    write_text_atomic,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writers_create_folders_and_replace_files(tmp_path: Path) -> None:
    out = tmp_path / "new" / "deeper"
    write_bytes_atomic(out / "a.bin", b"\x00\x01")
    write_text_atomic(out / "a.txt", "first")
    write_text_atomic(out / "a.txt", "second")
    write_json_atomic(out / "a.json", {"b": 1, "a": Path("x")}, sort_keys=True)
    array = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    write_png_atomic(out / "a.png", array)
    write_png_atomic(out / "b.png", Image.fromarray(array[:, :, 0]))
    write_safetensors_atomic(out / "a.safetensors", {"w": torch.ones(3, 2).t()}, {"k": "v"})

    assert (out / "a.bin").read_bytes() == b"\x00\x01"
    assert (out / "a.txt").read_text() == "second"
    text = (out / "a.json").read_text()
    assert text.endswith("}\n") and json.loads(text) == {"a": "x", "b": 1}
    assert text.index('"a"') < text.index('"b"')
    assert np.array_equal(np.asarray(Image.open(out / "a.png")), array)
    assert Image.open(out / "b.png").mode == "L"
    assert torch.equal(load_file(out / "a.safetensors")["w"], torch.ones(2, 3))
    assert _names(out) == ["a.bin", "a.json", "a.png", "a.safetensors", "a.txt", "b.png"]


def test_files_get_the_usual_mode(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644  # not tempfile's 0600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "f.txt", "old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["f.txt"]


def test_atomic_folder_replaces_a_folder_whole(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with atomic_folder(folder) as tmp:
        assert tmp.parent == tmp_path and not any(tmp.iterdir())
        (tmp / "a.txt").write_text("one")
        (tmp / "stale.txt").write_text("one")
    with atomic_folder(folder) as tmp:
        (tmp / "a.txt").write_text("two")
    assert _names(folder) == ["a.txt"] and (folder / "a.txt").read_text() == "two"
    assert _names(tmp_path) == ["out"]  # no temporary or moved-aside folder left


def test_a_failed_folder_write_keeps_the_old_folder(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with atomic_folder(folder) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_folder(folder) as tmp:
        (tmp / "a.txt").write_text("new")
        raise KeyboardInterrupt
    assert (folder / "a.txt").read_text() == "old"
    assert _names(tmp_path) == ["out"]
