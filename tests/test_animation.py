"""Animations: in-between layouts, flicker figures, and `layoutedit run --frames`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import FAST_SETTINGS, run_cli
from PIL import Image

from layoutedit.editing.animation import flicker, in_between
from layoutedit.scenes.layout_edits import Move, ObjectState, Scale, apply_operations
from layoutedit.scenes.masks import centroid
from layoutedit.shapes.world import sample_scene, write_scene_folder

NAMES = ("cat", "pot")


def _grid() -> np.ndarray:
    grid = np.full((64, 64), 2, dtype=np.int16)
    grid[10:20, 10:30] = 0
    grid[40:50, 40:50] = 1
    return grid


def test_in_between_interpolates_centres_and_sizes_and_ends_on_the_keyframe() -> None:
    start = ObjectState.from_labels(_grid(), NAMES)
    end_grid, end = apply_operations(_grid(), NAMES, [Move("cat", 20, 8), Scale("pot", 0.5)])
    frames = in_between(start, end, 4)
    assert len(frames) == 4 and np.array_equal(frames[-1], end_grid)
    x0, y0 = centroid(_grid() == 0)
    for j, grid in enumerate(frames[:-1], start=1):
        x, y = centroid(grid == 0)
        assert (x, y) == pytest.approx((x0 + 20 * j / 4, y0 + 8 * j / 4), abs=0.6)
    areas = [int((g == 1).sum()) for g in frames]
    assert areas == sorted(areas, reverse=True) and areas[-1] == 25  # shrinks steadily


def test_flicker_is_zero_for_a_still_sequence_and_sees_changes() -> None:
    grid = _grid()
    still = np.full((64, 64, 3), 100, dtype=np.uint8)
    fl = flicker([still, still, still], [grid, grid, grid], NAMES)
    assert fl["background_change"] == 0 and fl["colour_drift"] == {"cat": 0.0, "pot": 0.0}
    brighter = still.copy()
    brighter[grid == 2] = 110  # the background brightens by 10
    brighter[grid == 0] = 130  # the cat by 30 (all channels: distance 30 * sqrt(3))
    fl = flicker([still, brighter], [grid, grid], NAMES)
    assert fl["background_change"] == pytest.approx(10)
    assert fl["colour_drift"]["cat"] == pytest.approx(30 * np.sqrt(3), abs=1e-3)
    assert fl["colour_drift"]["pot"] == 0


def test_run_frames_writes_pngs_gif_and_flicker(tiny_model_dir: Path, tmp_path: Path) -> None:
    world = sample_scene(5, 2)
    write_scene_folder(world, tmp_path / "scene")
    a, b = world.names
    script = tmp_path / "anim.toml"
    script.write_text(
        f'scene = "scene"\nout = "anim"\nseeds = [8, 0]\nframes = 2\n{FAST_SETTINGS}'
        f'[[step]]\nmove = ["{a}=+4,0"]\n[[step]]\nscale = ["{b}=0.7"]\n'
    )
    code, stdout, err = run_cli(
        tiny_model_dir, tmp_path / "c", "--json", "run", str(script), "--frames", "3"
    )
    assert code == 0, err
    summary = json.loads(stdout)
    folder = tmp_path / "anim" / "animation"
    assert [r["frame"] for r in summary["frames"]] == list(range(1, 7))  # --frames wins
    assert {r["seed"] for r in summary["frames"]} == {8}  # one seed for every frame
    assert sorted(p.name for p in folder.glob("frame-*.png")) == [
        f"frame-{i:03d}.png" for i in range(1, 7)
    ]
    gif = Image.open(folder / "animation.gif")
    assert gif.n_frames == 6
    inversions = [r["unet_evaluations"]["inversion"]["total"] for r in summary["frames"]]
    assert inversions == [3, 0, 0, 0, 0, 0]
    fl = summary["flicker"]
    assert len(fl["background_change_per_pair"]) == 5 and set(fl["colour_drift"]) == {a, b}
