"""`accelerate launch -m layoutedit batch` with 2 CPU processes: the files of one process;
one process SIGKILLed midway, then a rerun: every row done exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from cli_support import launch, launch_command, run_cli, write_fast_config
from PIL import Image

from layoutedit.shapes.world import sample_scene, write_scene_folder

SCENES = 6


@pytest.fixture(scope="module")
def batch(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest, the output of a 1-process run) of 6 tiny scenes, one edit each."""
    root = tmp_path_factory.mktemp("batch")
    rows = []
    for i in range(SCENES):
        world = sample_scene(40 + i, 2)
        write_scene_folder(world, root / "scenes" / f"s{i}")
        edit = {"move": [f"{world.names[0]}=+3,0"]}
        rows.append({"scene": f"scenes/s{i}", "edits": [edit], "seeds": [0]})
    manifest = root / "scenes.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_fast_config(root)
    one = root / "one"
    code, _, err = run_cli(tiny_model_dir, root / "c1", *_args(manifest, one))
    assert code == 0, err
    return manifest, one


def _args(manifest: Path, out: Path) -> tuple[str, ...]:
    return (
        "batch",
        str(manifest),
        "--out",
        str(out),
        "--config",
        str(manifest.parent / "fast.toml"),
    )


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _assert_same_dataset(one: Path, other: Path) -> None:
    """Same files; same images (within one level of 255); same metadata and COCO files."""
    assert _files(one) == _files(other)
    for name in _files(one):
        if name.endswith(".png"):
            a = np.asarray(Image.open(one / name), dtype=np.int16)
            b = np.asarray(Image.open(other / name), dtype=np.int16)
            assert np.abs(a - b).max() <= 1, name
    for name in ("metadata.jsonl", "coco.json"):
        assert (one / name).read_text() == (other / name).read_text(), name


def test_two_processes_write_the_files_of_one(
    tiny_model_dir: Path, batch: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, one = batch
    two = tmp_path / "two"
    done = launch(tiny_model_dir, tmp_path / "c2", *_args(manifest, two), processes=2, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_dataset(one, two)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["rows"]["done"] == SCENES
    per = summary["per_process"]
    assert [p["rank"] for p in per] == [0, 1] and sum(p["done"] for p in per) == SCENES
    # Each process reported its own progress.
    assert "[0/2]" in done.stderr and "[1/2]" in done.stderr


def test_a_killed_process_then_a_rerun_does_every_row_once(
    tiny_model_dir: Path, batch: tuple[Path, Path], tmp_path: Path
) -> None:
    manifest, one = batch
    out, cache = tmp_path / "out", tmp_path / "cache"
    stage = tmp_path / ".out.layoutedit-batch"
    command = launch_command(tiny_model_dir, cache, *_args(manifest, out), processes=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        # Midway: once the first row is done, SIGKILL process 1 (its pid is in its tally).
        deadline = time.monotonic() + 240
        victim = None
        while time.monotonic() < deadline and proc.poll() is None:
            rows = [p for p in (stage / "rows").glob("*") if not p.name.startswith(".")]
            tally = stage / "ranks" / "rank-1.json"
            if rows and tally.is_file():
                victim = json.loads(tally.read_text())["pid"]
                os.kill(victim, signal.SIGKILL)
                break
            time.sleep(0.05)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    if victim is None:
        pytest.skip("the 2-process run ended before a row was done; nothing to kill")
    assert proc.returncode != 0, err[-3000:]  # the launcher reports the killed process
    before = {
        p.name: (p / "row.json").read_text()
        for p in (stage / "rows").iterdir()
        if not p.name.startswith(".")
    }
    assert 1 <= len(before) < SCENES and not out.exists()

    code, _, err = run_cli(tiny_model_dir, cache, *_args(manifest, out))
    assert code == 0, err
    assert not stage.exists()
    summary = json.loads((out / "summary.json").read_text())
    # Done since the last complete run: the killed run's rows and the rerun's, once each.
    assert summary["rows"] == {"total": SCENES, "done": SCENES, "skipped": 0, "failed": 0, "bad": 0}
    assert summary["per_process"][0]["done"] == SCENES - len(before), (sorted(before), err)
    for name, record in before.items():  # not run again
        assert (out / "rows" / name / "row.json").read_text() == record
    metadata = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(metadata) == len({m["file_name"] for m in metadata}) == 2 * SCENES
    _assert_same_dataset(one, out)
