"""The corrector (`editing.correct`, `loading.corrector`): the net's contract, the model
folder that carries one, the edit's start changed by it only where the edit changed the
start, and its recipe learning a correction it can measure."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from edit_support import UNCOVER_START, fast_config
from safetensors.torch import save_file
from test_model_pixels import _uncover

from layoutedit.atomic import write_safetensors_atomic
from layoutedit.backend import get_backend
from layoutedit.editing.correct import correct_image, shade_or_blend
from layoutedit.editing.refine import changed_zone, require_extra_models
from layoutedit.editing.session import EditSession
from layoutedit.errors import UserError
from layoutedit.loading.corrector import (
    CORRECTOR_FOLDER,
    CORRECTOR_INFO,
    CORRECTOR_WEIGHTS,
    Corrector,
    load_corrector,
    save_corrector,
)
from layoutedit.loading.model_loading import load_model
from layoutedit.scenes.scene import layout_from_labels
from layoutedit.shapes import corrector_train


def _random_corrector(seed: int = 0) -> Corrector:
    """A corrector whose output layer is not zero, so that it changes what it may."""
    torch.manual_seed(seed)
    net = Corrector((4, 8, 8))
    with torch.no_grad():
        net.out.weight.normal_(0, 0.5)
        net.out.bias.fill_(0.2)
    return net.eval()


def _images(seed: int, h: int = 32, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A random image and its guide masks: the zone a block, the other masks random."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = rng.random((4, h, w)) < 0.3
    masks[0] = False
    masks[0, 5:20, 8:25] = True
    return image, masks


def test_a_fresh_corrector_changes_nothing() -> None:
    image, masks = _images(0)
    assert np.array_equal(correct_image(Corrector((4, 8)), image, masks), image)


def test_the_correction_stays_inside_the_zone_at_any_size() -> None:
    net = _random_corrector()
    for h, w in ((32, 32), (30, 45)):  # 30 x 45 is padded to the net's coarsest scale
        image, masks = _images(1, h, w)
        out = correct_image(net, image, masks)
        zone = masks[0]
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.array_equal(out[~zone], image[~zone])
        assert np.any(out[zone] != image[zone])


def test_the_correction_of_a_mirrored_image_is_the_mirrored_correction() -> None:
    # The change is averaged over the image's mirror images, so no side is preferred; one
    # reading of a random net is not symmetric (the check that this test can fail).
    net = _random_corrector(4)
    image, masks = _images(5)
    flips = (lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a.swapaxes(0, 1))
    for flip in flips:
        mirrored = np.ascontiguousarray(flip(image))
        mirrored_masks = np.ascontiguousarray(np.stack([flip(m) for m in masks]))
        out = correct_image(net, mirrored, mirrored_masks).astype(int)
        assert np.abs(out - flip(correct_image(net, image, masks)).astype(int)).max() <= 1
        one = correct_image(net, mirrored, mirrored_masks, mirrors=False).astype(int)
        other = flip(correct_image(net, image, masks, mirrors=False)).astype(int)
        assert np.abs(one - other).max() > 1


def test_on_a_painted_part_the_change_only_shades_or_blends_toward_the_background() -> None:
    # A red part painted on a blue floor: darkening the red (shade) or moving it toward blue
    # (an outline's blend) stays; turning it green goes; off the part nothing is touched.
    h, w = 12, 12
    image = torch.empty(3, h, w)
    image[:] = torch.tensor([-1.0, -1.0, 1.0])[:, None, None]  # blue
    painted = torch.zeros(h, w, dtype=torch.bool)
    painted[4:8, 4:8] = True
    image[:, painted] = torch.tensor([1.0, -1.0, -1.0])[:, None]  # red
    green = torch.tensor([0.0, 0.4, 0.0])[:, None, None].expand(3, h, w)
    darker = torch.tensor([-0.3, 0.0, 0.0])[:, None, None].expand(3, h, w)
    bluer = torch.tensor([-0.2, 0.0, 0.2])[:, None, None].expand(3, h, w)
    for change, kept in ((green, False), (darker, True), (bluer, True)):
        out = shade_or_blend(change.clone(), image, painted, painted)
        assert torch.allclose(out[:, ~painted], change[:, ~painted])
        expected = change[:, painted] if kept else torch.zeros_like(change[:, painted])
        assert torch.allclose(out[:, painted], expected, atol=1e-5)


def test_correct_image_holds_its_change_back_only_on_painted_parts() -> None:
    net = _random_corrector(2)
    image, masks = _images(3)
    painted = np.zeros(masks.shape[1:], dtype=bool)
    painted[8:14, 10:18] = True
    free = correct_image(net, image, masks).astype(int)
    held = correct_image(net, image, masks, painted=painted).astype(int)
    assert np.array_equal(free[~painted], held[~painted])
    assert np.abs(free[painted] - held[painted]).max() > 1


def test_a_saved_corrector_loads_with_the_same_output(tmp_path: Path) -> None:
    net = _random_corrector(3)
    save_corrector(net, tmp_path / "c", {"steps": 7})
    info = json.loads((tmp_path / "c" / CORRECTOR_INFO).read_text())
    assert info == {"widths": [4, 8, 8], "steps": 7}
    again = load_corrector(tmp_path / "c")
    image, masks = _images(2)
    assert np.array_equal(correct_image(again, image, masks), correct_image(net, image, masks))
    assert not any(p.requires_grad for p in again.parameters())


def test_a_corrector_folder_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    with pytest.raises(ValueError, match=CORRECTOR_INFO):
        load_corrector(folder)
    save_corrector(_random_corrector(), folder, {})
    (folder / CORRECTOR_INFO).write_text(json.dumps({"widths": [4, 16, 8]}))
    with pytest.raises(ValueError, match="not a corrector"):
        load_corrector(folder)
    save_file({"x": torch.zeros(1)}, str(folder / CORRECTOR_WEIGHTS))
    (folder / CORRECTOR_INFO).write_text(json.dumps({"widths": [4, 8, 8]}))
    with pytest.raises(ValueError, match="not a corrector"):
        load_corrector(folder)


@pytest.fixture(scope="module")
def corrector_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corrector-model") / "model"
    shutil.copytree(tiny_model_dir, folder)
    save_corrector(_random_corrector(), folder / CORRECTOR_FOLDER, {})
    return folder


def test_a_model_folder_carries_its_corrector_outside_its_fingerprint(
    tiny_model_dir: Path, corrector_model_dir: Path, tmp_path: Path
) -> None:
    plain, with_corrector = load_model(str(tiny_model_dir)), load_model(str(corrector_model_dir))
    assert plain.corrector is None
    assert with_corrector.corrector in with_corrector.modules
    assert with_corrector.fingerprint == plain.fingerprint
    broken = tmp_path / "model"
    shutil.copytree(corrector_model_dir, broken)
    (broken / CORRECTOR_FOLDER / CORRECTOR_WEIGHTS).unlink()
    with pytest.raises(UserError, match="could not load the corrector"):
        load_model(str(broken))


def _edits(model: Any, **changes: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The uncover case edited with `changes` but the corrector off, then with `changes`,
    and the zone the corrector may change."""
    scene, labels = _uncover()
    settings = UNCOVER_START
    images, redraw = [], None
    for extra in (changes | {"correct": False}, changes):
        config = fast_config(**(settings | extra))
        session = EditSession(model, scene, config, get_backend("cpu"))
        layout = layout_from_labels(labels, scene)
        redraw = session.start_image(layout).redraw
        images.append(session.edit(layout).best().image)
    plain, corrected = images
    return plain, corrected, changed_zone(scene.image, plain, redraw)


def test_the_corrector_changes_the_edit_only_where_it_differs_from_the_source(
    corrector_model_dir: Path,
) -> None:
    model = load_model(str(corrector_model_dir))
    plain, corrected, zone = _edits(model, correct=True)
    assert np.array_equal(corrected[~zone], plain[~zone])
    assert np.any(corrected[zone] != plain[zone])
    # The `no-model` row skips every model step, the corrector included.
    undenoised, undenoised_corrected, _ = _edits(model, correct=True, denoise=False)
    assert np.array_equal(undenoised_corrected, undenoised)


def test_correct_on_a_model_without_a_corrector_is_a_user_error(tiny_model_dir: Path) -> None:
    model = load_model(str(tiny_model_dir))
    with pytest.raises(UserError, match="the model has no corrector"):
        require_extra_models(fast_config(init="paste", correct=True), model)
    require_extra_models(fast_config(init="paste", correct=True, denoise=False), model)


def _synthetic_pairs(folder: Path, count: int, stage: str = "final") -> None:
    """Pairs whose truth is the image darkened by 40 grey levels where the zone and the
    shadow mask meet: a fix that a corrector learns in a few hundred steps, reading the
    masks."""
    rng = np.random.default_rng(5)
    start = rng.integers(60, 200, (count, 32, 32, 3), dtype=np.uint8)
    zone = np.zeros((count, 32, 32), dtype=np.uint8)
    for i in range(count):
        y, x = rng.integers(0, 16, 2)
        zone[i, y : y + 12, x : x + 12] = 1
    shadow = np.zeros_like(zone)
    shadow[:, :, 10:] = 1  # every zone meets it
    truth = np.where((zone * shadow)[..., None] == 1, start - 40, start).astype(np.uint8)
    masks = np.stack([zone, np.zeros_like(zone), np.zeros_like(zone), shadow], axis=1)
    tensors = {k: torch.from_numpy(v) for k, v in (("start", start), ("truth", truth))}
    tensors["zone"] = torch.from_numpy(zone)
    tensors["masks"] = torch.from_numpy(masks)
    meta = {"prompts": json.dumps(["square"] * count), "preset": "test", "stage": stage}
    write_safetensors_atomic(folder / "pairs-000.safetensors", tensors, metadata=meta)


def test_the_recipe_learns_a_correction_resumes_and_exports(tmp_path: Path) -> None:
    pairs, run, model_dir = tmp_path / "pairs", tmp_path / "run", tmp_path / "model"
    pairs.mkdir()
    model_dir.mkdir()
    (model_dir / "model_index.json").write_text("{}")  # what `--export` checks for
    _synthetic_pairs(pairs, 24)
    common = ["--pairs", str(pairs), "--run-dir", str(run), "--held-out", "4", "--batch", "4"]
    corrector_train.main([*common, "--steps", "250", "--stop-after", "10", "--lr", "3e-3"])
    assert json.loads((run / "corrector_state.json").read_text())["step"] == 10
    corrector_train.main([*common, "--steps", "250", "--lr", "3e-3", "--export", str(model_dir)])
    log = (run / "train.log").read_text()
    assert "resumed at step 10" in log
    first, last = (line for line in log.splitlines() if "held-out" in line)
    before = float(last.split("before ")[1].split(" dB")[0])
    after = float(last.split("corrected ")[1].split(" dB")[0])
    assert after > before + 3  # the held-out pairs, never trained on, came closer to the truth
    assert first != last
    net = load_corrector(model_dir / CORRECTOR_FOLDER)
    info = json.loads((model_dir / CORRECTOR_FOLDER / CORRECTOR_INFO).read_text())
    assert info["steps"] == 250 and info["pairs"] == 20
    assert isinstance(net, Corrector)


@pytest.mark.parametrize(("count", "stage"), [(4, "final"), (24, "start")])
def test_the_recipe_refuses_too_few_pairs_or_start_pairs(
    tmp_path: Path, count: int, stage: str
) -> None:
    _synthetic_pairs(tmp_path, count, stage)
    with pytest.raises(SystemExit) as exc:
        corrector_train.main(["--pairs", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert not (tmp_path / "run").exists()


def _striped(shift: int = 0) -> np.ndarray:
    """A 32 x 32 image of diagonal stripes, `shift` px along."""
    y, x = np.mgrid[0:32, 0:32]
    grey = np.where(((x + y + shift) // 3) % 2 == 0, 70, 190)
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.uint8)


def test_the_soft_texture_loss_follows_the_benchmarks_texture_distance() -> None:
    from layoutedit.bench.metrics_v2 import texture_distance

    truth = _striped()
    mask = np.zeros((32, 32), dtype=bool)
    mask[4:28, 4:28] = True
    blurred = ((truth.astype(np.float64) + np.roll(truth, 1, 0) + np.roll(truth, 1, 1)) / 3).astype(
        np.uint8
    )
    flat = np.full_like(truth, 130)

    def unit(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1

    m = torch.from_numpy(mask)[None, None].float()
    soft = {
        name: float(corrector_train.texture_loss(unit(image), unit(truth), m))
        for name, image in (
            ("same", truth),
            ("shifted", _striped(2)),
            ("blurred", blurred),
            ("flat", flat),
        )
    }
    hard = {
        name: texture_distance(image, truth, mask)
        for name, image in (
            ("same", truth),
            ("shifted", _striped(2)),
            ("blurred", blurred),
            ("flat", flat),
        )
    }
    assert soft["same"] == 0.0
    # The same texture a little off costs less than a blur, a blur less than a flat fill.
    assert soft["shifted"] < soft["blurred"] < soft["flat"]
    for name in soft:
        assert abs(soft[name] - hard[name]) < 0.15, name
    # A blur has a gradient to follow back to the texture.
    pred = unit(blurred).requires_grad_(True)
    corrector_train.texture_loss(pred, unit(truth), m).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


def test_the_recipe_starts_from_given_weights_with_the_texture_loss(tmp_path: Path) -> None:
    pairs, run = tmp_path / "pairs", tmp_path / "run"
    pairs.mkdir()
    _synthetic_pairs(pairs, 12)
    start_file = tmp_path / "start.safetensors"
    save_file(Corrector().state_dict(), str(start_file))
    args = ["--pairs", str(pairs), "--run-dir", str(run), "--held-out", "4", "--batch", "4"]
    corrector_train.main(
        [*args, "--steps", "2", "--texture-weight", "2", "--init-from", str(start_file)]
    )
    log = (run / "train.log").read_text()
    assert f"starting from {start_file}" in log and "step 2" in log


def test_edit_refuses_correct_on_a_model_without_one_before_learning(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from cli_support import run_cli

    from layoutedit.shapes.world import sample_scene, write_scene_folder

    world = sample_scene(5, 2)
    folder = write_scene_folder(world, tmp_path / "scene", layouts=[world.labels()])
    config = tmp_path / "correct.toml"
    config.write_text('[edit]\ninit = "paste"\ncorrect = true\nsteps = 3\n')
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, _, err = run_cli(
        tiny_model_dir, cache, "edit", str(folder), "--config", str(config), "--out", str(out)
    )
    assert code == 2
    assert "edit.correct is on but the model has no corrector" in err
    assert "textual inversion" not in err  # refused before any learning
    assert not out.exists()


def test_the_recipe_refuses_a_missing_start_or_a_foreign_corrector(tmp_path: Path) -> None:
    pairs, run, model_dir = tmp_path / "pairs", tmp_path / "run", tmp_path / "model"
    pairs.mkdir()
    _synthetic_pairs(pairs, 12)
    args = ["--pairs", str(pairs), "--run-dir", str(run), "--held-out", "4", "--steps", "1"]
    with pytest.raises(SystemExit) as stop:
        corrector_train.main([*args, "--init-from", str(tmp_path / "missing.safetensors")])
    assert stop.value.code == 2
    for flag in ("--hidden-weight", "--texture-weight"):
        with pytest.raises(SystemExit) as stop:
            corrector_train.main([*args, flag, "-1"])
        assert stop.value.code == 2
    with pytest.raises(SystemExit) as stop:  # the held-out pairs would be trained on
        corrector_train.main([*args, "--more-pairs", str(pairs)])
    assert stop.value.code == 2
    mine = model_dir / CORRECTOR_FOLDER / CORRECTOR_INFO
    mine.parent.mkdir(parents=True)
    (model_dir / "model_index.json").write_text("{}")
    mine.write_text('{"widths": [4, 8, 8]}')  # someone's own corrector
    with pytest.raises(SystemExit) as stop:
        corrector_train.main([*args, "--export", str(model_dir)])
    assert stop.value.code == 2
    assert mine.read_text() == '{"widths": [4, 8, 8]}' and not run.exists()


def test_the_hidden_zone_loss_scores_each_pair_over_its_own_pixels() -> None:
    truth = torch.zeros(2, 3, 4, 4)
    pred = truth.clone()
    pred[0, :, 0, 0] = 0.5  # an error inside pair 0's mask
    pred[1] = 0.9  # pair 1 is wrong everywhere, but its mask is empty
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2, :2] = 1
    expected = math.log(0.25 / 4 + corrector_train.MSE_FLOOR)  # 1 of 4 pixels off by 0.5
    assert float(corrector_train.zone_log_mse(pred, truth, mask)) == pytest.approx(expected)
    assert float(corrector_train.zone_log_mse(pred, truth, torch.zeros_like(mask))) == 0.0


def test_batches_draw_the_asked_share_from_the_more_pairs() -> None:
    rng = np.random.default_rng(0)
    idx = corrector_train.batch_indices(rng, 10, 5, 8, 0.25).numpy()
    assert len(idx) == 8
    assert (idx >= 10).sum() == 2 and idx.max() < 15
    assert corrector_train.batch_indices(rng, 10, 0, 8, 0.25).max() < 10
