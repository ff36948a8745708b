"""The completer (`editing.complete`, `loading.completer`): the planes it reads, the whole
shapes it may give, the model folder that carries one, the start that takes its shapes, and
its recipe (`shapes.completer_data`, `shapes.completer_train`) learning a completion it can
measure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from edit_support import UNCOVER_START, fast_config
from safetensors.torch import save_file
from test_model_pixels import _uncover

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.backend import get_backend
from layoutedit.editing.complete import complete_wholes, completer_inputs, needs_completion
from layoutedit.editing.refine import require_extra_models
from layoutedit.editing.session import EditSession
from layoutedit.errors import UserError
from layoutedit.loading.completer import (
    COMPLETER_FOLDER,
    COMPLETER_INFO,
    COMPLETER_WEIGHTS,
    Completer,
    load_completer,
    save_completer,
)
from layoutedit.loading.model_loading import load_model
from layoutedit.scenes.scene import layout_from_labels
from layoutedit.shapes import completer_data, completer_train


def _labels() -> tuple[np.ndarray, np.ndarray]:
    """A 16 x 16 grid: object 0 a block, object 1 a block over its right side, object 2
    apart; background 3. And the order: 1 lies over 0."""
    labels = np.full((16, 16), 3, dtype=np.int16)
    labels[4:10, 2:8] = 0
    labels[3:11, 8:12] = 1
    labels[12:15, 12:15] = 2
    over = np.zeros((3, 3), dtype=bool)
    over[0, 1] = True
    return labels, over


def _sure_completer(bias: float) -> Completer:
    """A completer that says `bias`'s sign everywhere (its last layer a constant)."""
    net = Completer((4, 8), side=16)
    with torch.no_grad():
        net.out.weight.zero_()
        net.out.bias.fill_(bias)
    return net.eval()


def test_the_planes_are_the_object_what_lies_over_it_the_others_and_the_frame() -> None:
    labels, over = _labels()
    planes = completer_inputs(labels, 0, 3, over)
    assert planes.shape == (4, 16, 16) and planes.dtype == np.float32
    assert np.array_equal(planes[0] > 0, labels == 0)
    assert np.array_equal(planes[1] > 0, labels == 1)
    assert np.array_equal(planes[2] > 0, labels == 2)
    assert planes[3].all()
    # Object 1 lies over nothing: object 0 counts among the others.
    planes = completer_inputs(labels, 1, 3, over)
    assert not planes[1].any() and np.array_equal(planes[2] > 0, (labels == 0) | (labels == 2))


def test_only_an_object_that_one_over_it_touches_is_completed() -> None:
    labels, over = _labels()
    touched = [needs_completion(completer_inputs(labels, k, 3, over)) for k in range(3)]
    assert touched == [True, False, False]


def test_the_whole_adds_only_covered_pixels_the_completer_is_sure_of() -> None:
    labels, over = _labels()
    sure = complete_wholes(_sure_completer(8.0), labels, 3, over)
    assert np.array_equal(sure[0], (labels == 0) | (labels == 1))
    assert np.array_equal(sure[1], labels == 1) and np.array_equal(sure[2], labels == 2)
    unsure = complete_wholes(_sure_completer(-8.0), labels, 3, over)
    assert all(np.array_equal(unsure[k], labels == k) for k in range(3))


def test_a_saved_completer_loads_with_its_side_and_output(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Completer((4, 8), side=16).eval()
    save_completer(net, tmp_path / "c", {"steps": 3})
    info = json.loads((tmp_path / "c" / COMPLETER_INFO).read_text())
    assert info == {"widths": [4, 8], "side": 16, "steps": 3}
    again = load_completer(tmp_path / "c")
    assert again.side == 16 and not any(p.requires_grad for p in again.parameters())
    x = torch.rand(2, 4, 16, 16)
    assert torch.equal(again(x), net(x))


def test_a_completer_folder_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    with pytest.raises(ValueError, match=COMPLETER_INFO):
        load_completer(folder)
    save_completer(_sure_completer(1.0), folder, {})
    save_file({"x": torch.zeros(1)}, str(folder / COMPLETER_WEIGHTS))
    with pytest.raises(ValueError, match="not a completer"):
        load_completer(folder)


@pytest.fixture(scope="module")
def completer_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("completer-model") / "model"
    shutil.copytree(tiny_model_dir, folder)
    net = _sure_completer(8.0)
    net.side = 64  # the uncover case's grid
    save_completer(net, folder / COMPLETER_FOLDER, {})
    return folder


def test_a_model_folder_carries_its_completer_outside_its_fingerprint(
    tiny_model_dir: Path, completer_model_dir: Path, tmp_path: Path
) -> None:
    plain, with_completer = load_model(str(tiny_model_dir)), load_model(str(completer_model_dir))
    assert plain.completer is None
    assert with_completer.completer in with_completer.modules
    assert with_completer.fingerprint == plain.fingerprint
    broken = tmp_path / "model"
    shutil.copytree(completer_model_dir, broken)
    (broken / COMPLETER_FOLDER / COMPLETER_WEIGHTS).unlink()
    with pytest.raises(UserError, match="could not load the completer"):
        load_model(str(broken))


def test_whole_from_model_on_a_model_without_a_completer_is_a_user_error(
    tiny_model_dir: Path,
) -> None:
    model = load_model(str(tiny_model_dir))
    for denoise in (True, False):  # the completer runs on any paste start
        config = fast_config(init="paste", whole_from_model=True, denoise=denoise)
        with pytest.raises(UserError, match="the model has no completer"):
            require_extra_models(config, model)
    require_extra_models(fast_config(init="paste", whole_from_model=False), model)


def test_the_start_paints_the_completers_whole_shapes(completer_model_dir: Path) -> None:
    model = load_model(str(completer_model_dir))
    scene, labels = _uncover()
    layout = layout_from_labels(labels, scene)
    settings = UNCOVER_START | {"complete_hidden": True}

    def painted(**changes: object) -> np.ndarray:
        config = fast_config(**(settings | changes))
        part = EditSession(model, scene, config, get_backend("cpu")).start_image(layout).painted
        assert part is not None
        return part

    rules = painted(whole_from_model=False)
    # The completer here claims every covered pixel: the part it paints is no smaller.
    completed = painted(whole_from_model=True)
    assert completed.sum() > rules.sum()
    # The start is the same whether or not the model's steps follow it.
    assert np.array_equal(painted(whole_from_model=True, denoise=False), completed)


def test_the_samples_of_a_scene_hold_its_visible_pixels_within_its_whole() -> None:
    found = 0
    for seed in range(completer_data.COMPLETER_SEED_BASE, completer_data.COMPLETER_SEED_BASE + 8):
        planes, wholes = completer_data.scene_samples(seed)
        assert planes.shape[0] == wholes.shape[0] and planes.shape[1:] == (4, 64, 64)
        for p, w in zip(planes, wholes, strict=True):
            assert not (p[0] & ~w).any()  # every visible pixel belongs to the whole
            found += int((w & ~p[0]).any())
    assert found > 0  # some objects of these scenes are hidden in part


def _synthetic_samples(folder: Path, count: int) -> None:
    """16 x 16 samples whose whole shape is the object's block plus the whole block over
    it (the block behind runs on under the front one): a completion the convex hull
    misses where the front block reaches past the back one's rows."""
    rng = np.random.default_rng(3)
    planes = np.zeros((count, 4, 16, 16), dtype=bool)
    wholes = np.zeros((count, 16, 16), dtype=bool)
    for i in range(count):
        y, x = rng.integers(2, 6, 2)
        planes[i, 0, y : y + 6, x : x + 4] = True
        planes[i, 1, y - 2 : y + 8, x + 4 : x + 8] = True
        planes[i, 3] = True
        wholes[i] = planes[i, 0] | planes[i, 1]
    tensors = {
        "planes": torch.from_numpy(np.packbits(planes, axis=-1)),
        "wholes": torch.from_numpy(np.packbits(wholes, axis=-1)),
    }
    write_safetensors_atomic(folder / "samples-000.safetensors", tensors)


def test_the_recipe_learns_a_completion_resumes_and_exports(tmp_path: Path) -> None:
    samples, run, model_dir = tmp_path / "samples", tmp_path / "run", tmp_path / "model"
    samples.mkdir()
    model_dir.mkdir()
    (model_dir / "model_index.json").write_text("{}")  # what `--export` checks for
    _synthetic_samples(samples, 40)
    common = ["--samples", str(samples), "--run-dir", str(run), "--held-out", "8", "--batch", "8"]
    completer_train.main([*common, "--steps", "20", "--lr", "3e-3"])
    assert json.loads((run / "completer_state.json").read_text())["step"] == 20
    completer_train.main([*common, "--steps", "300", "--lr", "3e-3", "--export", str(model_dir)])
    log = (run / "train.log").read_text()
    assert "resumed at step 20" in log
    hull = float(log.split("IoU of the convex hull: ")[1].split()[0])
    last = [line for line in log.splitlines() if "IoU at step" in line][-1]
    learned = float(last.split("step 300: ")[1].split()[0])
    assert learned > hull + 0.2  # held-out samples, never trained on
    info = json.loads((model_dir / COMPLETER_FOLDER / COMPLETER_INFO).read_text())
    assert info["steps"] == 300 and info["samples"] == 32 and info["side"] == 16
    assert isinstance(load_completer(model_dir / COMPLETER_FOLDER), Completer)


def test_the_recipe_refuses_a_folder_without_samples_or_a_foreign_completer(
    tmp_path: Path,
) -> None:
    with pytest.raises(SystemExit) as exc:
        completer_train.main(["--samples", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert exc.value.code == 2 and not (tmp_path / "run").exists()
    _synthetic_samples(tmp_path, 12)
    with pytest.raises(SystemExit) as exc:  # every sample would be held out
        completer_train.main(["--samples", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert exc.value.code == 2 and not (tmp_path / "run").exists()
    model_dir = tmp_path / "model"
    (model_dir / COMPLETER_FOLDER).mkdir(parents=True)
    (model_dir / "model_index.json").write_text("{}")
    (model_dir / COMPLETER_FOLDER / COMPLETER_INFO).write_text(json.dumps({"recipe": "mine"}))
    with pytest.raises(SystemExit) as exc:
        completer_train.main(
            [
                "--samples",
                str(tmp_path),
                "--run-dir",
                str(tmp_path / "run"),
                "--held-out",
                "2",
                "--export",
                str(model_dir),
            ]
        )
    assert exc.value.code == 2 and not (tmp_path / "run").exists()
    info = json.loads((model_dir / COMPLETER_FOLDER / COMPLETER_INFO).read_text())
    assert info == {"recipe": "mine"}  # someone else's completer is kept


def test_the_sample_writer_refuses_a_file_for_its_folder(tmp_path: Path) -> None:
    taken = tmp_path / "samples"
    taken.write_text("mine")
    for args in (["--out", str(taken)], ["--out", str(tmp_path / "new"), "--shards", "0"]):
        with pytest.raises(SystemExit) as exc:
            completer_data.main(args)
        assert exc.value.code == 2
    assert taken.read_text() == "mine" and not (tmp_path / "new").exists()
