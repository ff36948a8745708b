"""Layout-operation flags on `layoutedit edit` and `layoutedit inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import object_names, run_cli, write_fast_config
from PIL import Image

from layoutedit.shapes.world import sample_scene, write_scene_folder


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    world = sample_scene(5, 2)
    return write_scene_folder(world, tmp_path / "scene", layouts=[world.labels()])


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_fast_config(tmp_path, extra_edit="seeds = [0]\n")


def test_edit_with_operations_writes_the_layout_map(
    tiny_model_dir: Path, scene_dir: Path, config_file: Path, tmp_path: Path
) -> None:
    first, second = object_names(scene_dir)
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        tiny_model_dir,
        tmp_path / "cache",
        "--json",
        "edit",
        str(scene_dir),
        "--config",
        str(config_file),
        "--move",
        f"{first}=+4,-2",
        "--scale",
        f"{second}=0.8",
        "--to-front",
        first,
        "--out",
        str(out),
    )
    assert code == 0, err
    (summary,) = json.loads(stdout)
    assert summary["operations"] == [
        f"--scale {second}=0.8",
        f"--move {first}=+4,-2",
        f"--to-front {first}",
    ]
    folder = out / "operations"
    assert sorted(p.name for p in folder.iterdir()) == [
        "edit.json",
        "layout.png",
        "seed-0.png",
        "sheet.png",
    ]
    assert summary["layout_map"] == str(folder / "layout.png")
    layout = np.asarray(Image.open(folder / "layout.png").convert("RGB"))
    source = np.asarray(Image.open(scene_dir / "mask.png").convert("RGB"))
    assert layout.shape == source.shape and not np.array_equal(layout, source)
    record = json.loads((folder / "edit.json").read_text())
    assert record["operations"] == summary["operations"]

    # The written map is a layout that `edit --layout` takes back (same colours).
    code, _, err = run_cli(
        tiny_model_dir,
        tmp_path / "cache",
        "edit",
        str(scene_dir),
        "--config",
        str(config_file),
        "-l",
        str(folder / "layout.png"),
        "--out",
        str(tmp_path / "again"),
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--move", "dog=+4,0"], "no object 'dog'"),
        (["--move", "{a}=+900,0"], "pushed out of frame by --move"),
        (["--scale", "{a}=0"], "greater than 0"),
        (["--scale", "{a}=-2"], "greater than 0"),
        (["--move", "{a}=4"], "2 numbers"),
        (["--box", "{a}=0.1,0.2,x,0.6"], "4 numbers"),
        (["--swap", "{a}"], "name two objects"),
    ],
)
def test_bad_operations_exit_2_with_one_line_before_the_model_loads(
    scene_dir: Path, tmp_path: Path, flags: list[str], message: str
) -> None:
    first = object_names(scene_dir)[0]
    args = [f.format(a=first) for f in flags]
    # A model that does not exist: the operations must fail first.
    for command in ("edit", "inspect"):
        code, _, err = run_cli(
            tmp_path / "no-model", tmp_path / "cache", command, str(scene_dir), *args
        )
        assert code == 2, (command, err)
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_inspect_shows_what_operations_do(scene_dir: Path, tmp_path: Path) -> None:
    first, second = object_names(scene_dir)
    code, stdout, err = run_cli(
        "builtin:shapes-tiny",
        tmp_path / "cache",
        "--json",
        "inspect",
        str(scene_dir),
        "--move",
        f"{first}=+4,-2",
        "--scale",
        f"{second}=0.5",
    )
    assert code == 0, err
    (layout,) = json.loads(stdout)["layouts"]
    moves = {m["name"]: m for m in layout["moves"]}
    assert layout["operations"] == [f"--scale {second}=0.5", f"--move {first}=+4,-2"]
    assert moves[second]["scale"] == pytest.approx(0.5, abs=0.05)
    assert moves[second]["dx"] == pytest.approx(0, abs=0.6)  # nearest sampling: < 1 px
    # Centroids of visible parts: the first object may show more where the second shrank.
    assert (moves[first]["dx"], moves[first]["dy"]) == pytest.approx((4, -2), abs=1.5)


def test_edit_operations_on_the_published_sample(
    seed_sample: Path, config_file: Path, tmp_path: Path
) -> None:
    # The embedded model: the random test model's 16-token prompts cannot hold these words.
    code, stdout, err = run_cli(
        "builtin:shapes-tiny",
        tmp_path / "cache",
        "--json",
        "edit",
        str(seed_sample),
        "--config",
        str(config_file),
        "--move",
        "cat=-40,-10",
        "--scale",
        "pot=0.8",
        "--to-front",
        "pot",
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0, err
    (summary,) = json.loads(stdout)
    assert Image.open(tmp_path / "out" / "operations" / "seed-0.png").size == (512, 512)
    assert Image.open(summary["layout_map"]).size == (512, 512)
    code, _, err = run_cli(
        "builtin:shapes-tiny", tmp_path / "cache", "edit", str(seed_sample), "--swap", "plant,pot"
    )
    assert code == 2 and "pot pushed out of frame by --swap plant,pot" in err
