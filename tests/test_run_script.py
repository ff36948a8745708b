"""`layoutedit run script.toml`: checking the whole script first, one learn and one inversion
for every step, numbered outputs, summary.json and the sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_support import FAST_SETTINGS, object_names, run_cli
from PIL import Image

from layoutedit.edit_script import load_script
from layoutedit.errors import UserError
from layoutedit.scenes.layout_edits import Move, apply_operations
from layoutedit.shapes.world import sample_scene, write_scene_folder


@pytest.fixture
def scene_dir(tmp_path: Path) -> Path:
    world = sample_scene(5, 2)
    labels = world.labels()
    return write_scene_folder(world, tmp_path / "scene", layouts=[np.roll(labels, 6, axis=1)])


def _script(tmp_path: Path, steps: str, head: str = "") -> Path:
    path = tmp_path / "script.toml"
    path.write_text(f'scene = "scene"\nout = "run"\nseeds = [0]\n{head}\n{FAST_SETTINGS}\n{steps}')
    return path


def test_script_learns_and_inverts_once_for_every_step(
    tiny_model_dir: Path, scene_dir: Path, tmp_path: Path
) -> None:
    a, b = object_names(scene_dir)
    steps = f"""
[[step]]
layout = "scene/target_layout/layout1.png"
[[step]]
move = ["{a}=+3,0"]
[[step]]
ops = ["scale {b}=0.8", "to-front {b}"]
name = "smaller"
"""
    code, stdout, err = run_cli(
        tiny_model_dir, tmp_path / "cache", "--json", "run", str(_script(tmp_path, steps))
    )
    assert code == 0, err
    summary = json.loads(stdout)
    out = tmp_path / "run"
    assert summary == json.loads((out / "summary.json").read_text())
    assert [Path(s["folder"]).name for s in summary["steps"]] == [
        "step-01",
        "step-02",
        "step-03-smaller",
    ]
    learn = summary["learn"]
    assert learn["cached"] is False and learn["unet_evaluations"]["forward"] > 0
    inversions = [s["unet_evaluations"]["inversion"]["total"] for s in summary["steps"]]
    assert inversions == [3, 0, 0]  # one inversion (3 DDIM steps), reused by later steps
    assert [s["reused_session"] for s in summary["steps"]] == [False, True, True]
    for step in summary["steps"]:
        folder = Path(step["folder"])
        assert {"edit.json", "layout.png", "seed-0.png", "sheet.png"} <= {
            p.name for p in folder.iterdir()
        }
        assert step["unet_evaluations"]["sampling"]["total"] > 0
    # Step 2 moves the first object of step 1's layout (not of the source's masks).
    script = load_script(tmp_path / "script.toml", model=str(tiny_model_dir))
    one, two = script.steps[0].layout.labels, script.steps[1].layout.labels
    expected, _ = apply_operations(one, [a, b], [Move(a, 3, 0)])
    assert np.array_equal(two, expected)
    from_source, _ = apply_operations(script.scene.labels, [a, b], [Move(a, 3, 0)])
    assert not np.array_equal(two, from_source)
    sheet = Image.open(out / "sheet.png")
    assert sheet.size[0] > sheet.size[1]  # source + 3 steps side by side

    # Again: the concept comes from the cache, still one inversion (now from the cache).
    code, stdout, err = run_cli(
        tiny_model_dir, tmp_path / "cache", "--json", "run", str(tmp_path / "script.toml")
    )
    assert code == 0, err
    again = json.loads(stdout)
    assert again["learn"]["cached"] is True
    assert [s["unet_evaluations"]["inversion"]["total"] for s in again["steps"]] == [0, 0, 0]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            '[[step]]\nmove = ["{a}=+3,0"]\n[[step]]\nmove = ["{a}=+900,0"]',
            "step 2: {a} pushed out",
        ),
        ('[[step]]\nmove = ["dog=+3,0"]', "step 1: --move dog=+3,+0: the scene has no object"),
        ('[[step]]\nscale = ["{a}=0"]', "step 1: --scale"),
        ('[[step]]\nmove = ["{a}=3"]', "step 1: --move"),
        ('[[step]]\nlayout = "nope.png"', "step 1: "),
        ('[[step]]\nname = "x"', "step 1: give a `layout` file or operations"),
        ('[[step]]\nmove = ["{a}=+1,0"]\n[[step]]\nrotate = 3', "step 2: unknown key 'rotate'"),
        ("", "no [[step]] tables"),
    ],
)
def test_a_bad_step_exits_2_naming_it_before_any_model_work(
    scene_dir: Path, tmp_path: Path, steps: str, message: str
) -> None:
    a = object_names(scene_dir)[0]
    path = _script(tmp_path, steps.format(a=a))
    with pytest.raises(UserError) as info:
        load_script(path)
    assert message.format(a=a) in info.value.line()
    # The CLI, with a model that does not exist: the script fails first, in one line.
    code, _, err = run_cli(tmp_path / "no-model", tmp_path / "cache", "run", str(path))
    assert code == 2 and message.format(a=a) in err and len(err.strip().splitlines()) == 1


def test_script_level_mistakes(scene_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[[step]]\nmove = ["x=+1,0"]\n')
    with pytest.raises(UserError, match="needs `scene"):
        load_script(path)
    path.write_text('scene = "scene"\ncolour = 3\n')
    with pytest.raises(UserError, match="unknown key 'colour'"):
        load_script(path)
    path.write_text('scene = "scene"\npreset = "slow"\n[[step]]\nmove = ["x=+1,0"]\n')
    with pytest.raises(UserError, match="unknown preset 'slow'"):
        load_script(path)
