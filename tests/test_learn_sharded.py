"""`accelerate launch -m layoutedit learn` with 2 CPU processes: one learns, none hangs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_support import launch

from layoutedit.shapes.world import sample_scene, write_scene_folder

STEPS = ("--ti-steps", "2", "--ft-steps", "2", "--checkpoint-every", "0")


def test_learn_under_two_processes_learns_once(tiny_model_dir: Path, tmp_path: Path) -> None:
    scene = write_scene_folder(sample_scene(5, 2), tmp_path / "scene")
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ("learn", str(scene), "--preset", "fast", *STEPS, "--out", str(out))
    try:
        # A deadlocked launch never ends; the bound makes it a failure instead of a hang.
        done = launch(tiny_model_dir, cache, *args, processes=2, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("2-process learn did not finish in 120 s (deadlock)")
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 0 learned and reported; the other process said in one line that it had no share.
    assert "learned" in done.stdout and "from the cache" not in done.stdout, done.stdout
    notes = [line for line in done.stderr.splitlines() if line.startswith("process 1 of 2")]
    assert len(notes) == 1, done.stderr[-3000:]
    assert (out / "concept" / "concept.json").is_file()

    # The concept is in the cache once, and a 1-process run finds it there.
    again = launch(tiny_model_dir, cache, "--json", *args[:-2], processes=1, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["cached"] is True
