"""The README's Python API example runs as written (on a shapes scene whose objects are named
`cat` and `pot`, with the `fast` preset standing in for the embedded model's tuned one)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layoutedit.shapes.world import sample_scene, write_scene_folder

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no python block under '## Python API'"
    return match.group(1)


def write_cat_and_pot_scene(folder: Path) -> None:
    """A 128 px two-object scene with room for the example's `move cat=+40,-10`."""
    for seed in range(200):
        scene = sample_scene(seed, 2, size=128)
        cat = scene.objects[0]
        if cat.cx + 40 + cat.size < 124 and cat.cy - 10 - cat.size > 4:
            break
    else:
        pytest.fail("no shapes scene leaves room for the README's move")
    write_scene_folder(scene, folder, layouts=[scene.labels()])
    names = json.loads((folder / "semantic_dict.json").read_text())
    colours = list(names.values())
    renamed = {"cat": colours[0], "pot": colours[1], "background": colours[2]}
    (folder / "semantic_dict.json").write_text(json.dumps(renamed))


def test_the_python_api_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from layoutedit import config

    write_cat_and_pot_scene(tmp_path / "scene")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAYOUTEDIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(config.MODEL_PRESETS, "builtin:shapes-tiny", "fast")
    namespace: dict[str, Any] = {}
    exec(compile(python_api_example(), str(README), "exec"), namespace)

    result, again = namespace["result"], namespace["again"]
    assert [c.seed for c in result.candidates] == [0, 8]
    assert (tmp_path / "out").is_dir() and any((tmp_path / "out").iterdir())
    assert again.reused_session
    moved = np.argwhere(again.layout.labels == 0).mean(axis=0)
    before = np.argwhere(result.layout.labels == 0).mean(axis=0)
    assert moved[1] - before[1] == pytest.approx(40, abs=1.5)  # cat moved 40 px right
    assert moved[0] - before[0] == pytest.approx(-10, abs=1.5)  # and 10 px up
