"""The refiner (`editing.refine`): its pure parts, the model folder that carries one, and the
edit's start corrected by it only where the edit changed the start."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from edit_support import UNCOVER_START, fast_config, load_tiny
from test_model_pixels import _uncover

from layoutedit.backend import get_backend
from layoutedit.counting import UNetCounter
from layoutedit.editing.denoising import scheduler_pair
from layoutedit.editing.refine import (
    REFINER_EXTRA_CHANNELS,
    changed_zone,
    refine_latents,
    refine_timesteps,
    refined_change,
    refiner_input,
    zone_cells,
)
from layoutedit.editing.session import EditSession
from layoutedit.errors import UserError
from layoutedit.loading.model_loading import REFINER_FOLDER, load_model
from layoutedit.scenes.morphology import disk, erode
from layoutedit.scenes.scene import layout_from_labels
from layoutedit.shapes.refiner_train import widen_unet


def test_the_zone_is_what_changed_grown_plus_the_redraw() -> None:
    source = np.zeros((16, 16, 3), dtype=np.uint8)
    start = source.copy()
    start[8, 8, 1] = 5  # one channel of one pixel
    redraw = np.zeros((16, 16), dtype=bool)
    redraw[0, 0] = True
    zone = changed_zone(source, start, redraw)
    assert zone[8, 8] and zone[8, 10] and zone[6, 8]  # grown by 2 px
    assert not zone[8, 12] and not zone[3, 8]
    assert zone[0, 0]
    assert not changed_zone(source, source, None).any()


def test_a_cell_is_in_the_zone_when_any_of_its_pixels_is() -> None:
    zone = torch.zeros(1, 1, 16, 16)
    zone[0, 0, 5, 9] = 1.0
    cells = zone_cells(zone, 4)
    assert cells.shape == (1, 1, 4, 4)
    assert cells[0, 0, 1, 2] == 1 and cells.sum() == 1


def test_the_refiner_reads_noisy_latent_start_and_zone_in_that_order() -> None:
    z, start, zone = (
        torch.full((2, 4, 3, 3), 1.0),
        torch.full((2, 4, 3, 3), 2.0),
        torch.zeros(2, 1, 3, 3),
    )
    x = refiner_input(z, start, zone)
    assert x.shape == (2, 4 + REFINER_EXTRA_CHANNELS, 3, 3)
    assert torch.all(x[:, :4] == 1) and torch.all(x[:, 4:8] == 2) and torch.all(x[:, 8] == 0)


def test_the_change_is_the_samples_mean_less_the_round_trip() -> None:
    trip = np.full((2, 2, 3), 100, dtype=np.uint8)
    a, b = trip + 10, trip - 4
    assert np.allclose(refined_change([a, b], trip), 3.0)
    assert not refined_change([trip, trip], trip).any()


class _Counting(torch.nn.Module):
    """Wraps a UNet and counts its calls."""

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet, self.calls = unet, 0

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.unet(*args, **kwargs)


@pytest.fixture(scope="module")
def refiner_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a refiner whose start and zone kernels are random (not zero), so
    that what it returns depends on the start."""
    folder = tmp_path_factory.mktemp("refiner-model") / "model"
    shutil.copytree(tiny_model_dir, folder)
    refiner = widen_unet(load_model(str(tiny_model_dir)).unet)
    with torch.no_grad():
        weight = refiner.conv_in.weight
        weight[:, -REFINER_EXTRA_CHANNELS:] = torch.randn(
            weight[:, -REFINER_EXTRA_CHANNELS:].shape, generator=torch.Generator().manual_seed(0)
        )
    refiner.save_pretrained(folder / REFINER_FOLDER, safe_serialization=True)
    return folder


def test_refiner_timesteps_run_from_the_strengths_level_down() -> None:
    assert refine_timesteps(0.5, 1) == [499]
    assert refine_timesteps(1.0, 4) == [999, 749, 500, 250]
    assert refine_timesteps(0.001, 3) == [0, 0, 0]


def test_refining_runs_each_timestep_once_per_noise(refiner_model_dir: Path) -> None:
    model = load_model(str(refiner_model_dir))
    refiner = _Counting(model.refiner)
    abar = scheduler_pair(model.scheduler_config, 10)[0].alphas_cumprod
    side = model.latent_size
    start = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(1))
    zone = torch.ones(1, 1, side, side)
    text = model.encode_prompts(["red square"])
    noises = [
        torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(s)) for s in (2, 3)
    ]
    counter = UNetCounter()
    first = refine_latents(refiner, abar, start, zone, text, [600, 300, 100], noises, counter)
    assert refiner.calls == counter.forward == 2 * 3
    again = refine_latents(refiner, abar, start, zone, text, [600, 300, 100], noises)
    assert all(torch.allclose(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.allclose(first[0], first[1])  # each noise its own sample
    # One step is the refiner's estimate of the clean latent from the noised start.
    (one,) = refine_latents(refiner, abar, start, zone, text, [400], noises[:1])
    a = abar[400]
    noisy = a.sqrt() * start + (1 - a).sqrt() * noises[0]
    with torch.no_grad():
        eps = model.refiner(torch.cat([noisy, start, zone], 1), 400, encoder_hidden_states=text)
    assert torch.allclose(one, (noisy - (1 - a).sqrt() * eps.sample) / a.sqrt(), atol=1e-5)


def test_a_model_folder_carries_its_refiner_outside_its_fingerprint(
    tiny_model_dir: Path, refiner_model_dir: Path
) -> None:
    plain, with_refiner = load_model(str(tiny_model_dir)), load_model(str(refiner_model_dir))
    assert plain.refiner is None
    assert with_refiner.refiner.config.in_channels == 4 + REFINER_EXTRA_CHANNELS
    assert with_refiner.refiner in with_refiner.modules
    assert not any(p.requires_grad for p in with_refiner.refiner.parameters())
    # Concepts and inversions never run the refiner: they stay valid beside one.
    assert with_refiner.fingerprint == plain.fingerprint


def test_a_refiner_with_only_pickle_weights_is_refused(
    refiner_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(refiner_model_dir, folder)
    weights = folder / REFINER_FOLDER / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(UserError, match="pickle"):
        load_model(str(folder))


def _start(model: Any, **changes: object) -> tuple[Any, np.ndarray]:
    """The paste start of the uncover case and the zone the refiner may change."""
    scene, labels = _uncover()
    settings = UNCOVER_START
    session = EditSession(model, scene, fast_config(**(settings | changes)), get_backend("cpu"))
    start = session.start_image(layout_from_labels(labels, scene))
    return start, changed_zone(scene.image, start.image, start.redraw)


def test_the_refiner_changes_the_start_only_where_the_edit_changed_it(
    refiner_model_dir: Path,
) -> None:
    model = load_tiny(refiner_model_dir)
    plain, zone = _start(model)
    refined, _ = _start(model, refine=True, refine_samples=2)
    objects, _ = _start(model, refine=True, refine_samples=2, refine_objects=True)
    inner = erode(plain.footprints.any(axis=0), disk(1))
    assert (zone & inner).any() and (zone & ~inner).any()
    for image in (refined.image, objects.image):
        assert np.array_equal(image[~zone], plain.image[~zone])
    # The pasted objects' own pixels stay as pasted unless `refine_objects` says otherwise.
    assert np.array_equal(refined.image[inner], plain.image[inner])
    assert not np.array_equal(refined.image[zone & ~inner], plain.image[zone & ~inner])
    assert not np.array_equal(objects.image[zone & inner], plain.image[zone & inner])
    # With no denoising step (the bench's `no-model`), no refiner either.
    skipped, _ = _start(model, refine=True, denoise=False)
    assert np.array_equal(skipped.image, plain.image)


def test_refine_on_a_model_without_a_refiner_is_a_user_error(tiny_model_dir: Path) -> None:
    with pytest.raises(UserError, match="no refiner"):
        _start(load_tiny(tiny_model_dir), refine=True)


def test_the_editor_refuses_refine_without_a_refiner_before_learning(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from layoutedit import Editor
    from layoutedit.config import resolve_settings
    from layoutedit.shapes.world import sample_scene, write_scene_folder

    world = sample_scene(5, 2)
    folder = write_scene_folder(world, tmp_path / "scene", layouts=[world.labels()])
    edit = {"init": "paste", "refine": True, "steps": 3, "seeds": (0,)}
    settings = resolve_settings("fast", None, {"edit": edit})
    editor = Editor(model=str(tiny_model_dir), backend="cpu", cache_dir=tmp_path, settings=settings)
    scene = editor.scene(folder)
    with pytest.raises(UserError, match="no refiner"):
        editor.edit(scene, folder / "target_layout" / "layout1.png")
    assert editor.cached_concept(scene) is None  # nothing was learned first
