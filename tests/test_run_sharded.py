"""`accelerate launch -m layoutedit run` with 2 CPU processes gives the files of a 1-process
run (steps and animation frames split between the processes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import FAST_SETTINGS, launch, write_fast_config
from PIL import Image

from layoutedit.editing.sharding import Shard, current_shard
from layoutedit.shapes.world import sample_scene, write_scene_folder

STEPS = """
[[step]]
move = ["{a}=+3,0"]
[[step]]
scale = ["{b}=0.8"]
[[step]]
move = ["{a}=-2,+2"]
"""


def test_shard_takes_every_nth_item(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Shard(0, 2).mine(5) == [0, 2, 4] and Shard(1, 2).mine(5) == [1, 3]
    assert Shard().gather({"x": 1}) == [{"x": 1}]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert current_shard() == Shard(1, 2)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="does not fit"):
        current_shard()


def _layoutedit(model: Path, cache: Path, *args: str, processes: int) -> None:
    done = launch(model, cache, *args, processes=processes)
    assert done.returncode == 0, done.stderr[-3000:]


def _same_png(a: Path, b: Path) -> bool:
    return np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_two_processes_write_the_files_of_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    world = sample_scene(5, 2)
    write_scene_folder(world, tmp_path / "scene")
    a, b = world.names
    script = tmp_path / "script.toml"
    script.write_text(f'scene = "scene"\nseeds = [0]\n{FAST_SETTINGS}{STEPS.format(a=a, b=b)}')
    one, two = tmp_path / "one", tmp_path / "two"
    _layoutedit(tiny_model_dir, tmp_path / "c1", "run", str(script), "-o", str(one), processes=1)
    _layoutedit(tiny_model_dir, tmp_path / "c2", "run", str(script), "-o", str(two), processes=2)
    names = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    for name in names:
        if name.suffix == ".png":
            assert _same_png(one / name, two / name), name
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert (s1["processes"], s2["processes"]) == (1, 2)
    keep = ("step", "layout", "operations", "best_seed", "best_loss")
    assert [{k: r[k] for k in keep} for r in s1["steps"]] == [
        {k: r[k] for k in keep} for r in s2["steps"]
    ]
    # Each process inverted the scene at most once (the cache lock: usually one of them).
    assert sum(r["unet_evaluations"]["inversion"]["total"] for r in s2["steps"]) in (3, 6)

    # Animation frames split the same way.
    args = ("run", str(script), "--frames", "2")
    _layoutedit(tiny_model_dir, tmp_path / "c1", *args, "-o", str(one / "a"), processes=1)
    _layoutedit(tiny_model_dir, tmp_path / "c2", *args, "-o", str(two / "a"), processes=2)
    frames = sorted((one / "a" / "animation").glob("frame-*.png"))
    assert len(frames) == 6
    for frame in frames:
        assert _same_png(frame, two / "a" / "animation" / frame.name), frame.name
    f1 = json.loads((one / "a" / "summary.json").read_text())["flicker"]
    f2 = json.loads((two / "a" / "summary.json").read_text())["flicker"]
    assert f1 == f2


def test_edit_over_a_layout_folder_splits_between_two_processes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    world = sample_scene(5, 2)
    labels = world.labels()
    moved = [np.roll(labels, shift, axis=1) for shift in (4, -4, 8)]
    scene = write_scene_folder(world, tmp_path / "scene", layouts=moved)
    config = write_fast_config(tmp_path)
    args = ("edit", str(scene), "--config", str(config), "--seeds", "0")
    one, two = tmp_path / "one", tmp_path / "two"
    _layoutedit(tiny_model_dir, tmp_path / "c1", *args, "--out", str(one), processes=1)
    _layoutedit(tiny_model_dir, tmp_path / "c2", *args, "--out", str(two), processes=2)
    for stem in ("layout1", "layout2", "layout3"):
        assert _same_png(one / stem / "seed-0.png", two / stem / "seed-0.png"), stem
        assert _same_png(one / stem / "sheet.png", two / stem / "sheet.png"), stem
