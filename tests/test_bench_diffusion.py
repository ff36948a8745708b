"""The diffusion variants through the library on the tiny random model: one concept per
scene shared by full/no-guidance/no-blend, the variant settings, and the cost accounting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from layoutedit.bench.cases import make_cases
from layoutedit.bench.diffusion import DiffusionRuntime
from layoutedit.bench.run import run_bench
from layoutedit.bench.variants import DIFFUSION_SPECS, build_variants
from layoutedit.config import Settings

STEPS = 4


def tiny_settings() -> Settings:
    """A few steps of everything; no refinement, so UNet counts follow from the settings."""
    return Settings.model_validate(
        {
            "learn": {"ti_steps": 2, "ti_batch_size": 1, "ti_joint": True, "ft_steps": 2},
            "edit": {
                "steps": STEPS,
                "max_iter_to_alter": 2,
                "refinement": {},
                "max_refinement_steps": 0,
                "blend_steps": 2,
                "seeds": (0,),
            },
        }
    )


@pytest.mark.slow
def test_diffusion_variants_share_one_concept(tiny_model_dir: Path, tmp_path: Path) -> None:
    cases = make_cases(1, seed=0, layouts_per_scene=1)
    made: list[DiffusionRuntime] = []

    def factory() -> DiffusionRuntime:
        made.append(
            DiffusionRuntime(str(tiny_model_dir), "cpu", tiny_settings(), tmp_path, tmp_path)
        )
        return made[0]

    names = ["full", "no-guidance", "no-concepts", "no-blend"]
    result = run_bench(cases, build_variants(names, factory))
    [runtime] = made  # one runtime for every diffusion row
    assert len(runtime._learned) == 1  # learned once for the scene
    rows = {r.name: r for r in result.rows}
    learn = rows["full"].learn_seconds
    assert learn > 0
    assert rows["no-guidance"].learn_seconds == learn == rows["no-blend"].learn_seconds
    assert rows["no-concepts"].learn_seconds == 0
    for name in names:
        [image] = result.outputs[name].values()
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert rows[name].unet_evaluations > 0
    # Costs: blending needs the source inverted (STEPS conditional UNet calls), shared by
    # full and no-guidance but charged to both; no-blend never inverts. Guidance adds
    # gradient passes, so no-guidance samples with fewer evaluations than full.
    full, no_blend = rows["full"].unet_evaluations, rows["no-blend"].unet_evaluations
    assert full - no_blend == STEPS
    assert rows["no-guidance"].unet_evaluations < full


def test_variant_settings() -> None:
    runtime = DiffusionRuntime.__new__(DiffusionRuntime)  # settings only, no model
    runtime.settings = tiny_settings()
    no_guidance = runtime.edit_config(DIFFUSION_SPECS["no-guidance"])
    assert no_guidance.scale_factor == 0 and no_guidance.refinement == {}
    assert no_guidance.use_concept and no_guidance.blend_steps == 2
    assert runtime.edit_config(DIFFUSION_SPECS["no-blend"]).blend_steps == 0
    plain = runtime.edit_config(DIFFUSION_SPECS["no-concepts"])
    assert not plain.use_concept and plain.scale_factor == 20.0
    assert runtime.edit_config(DIFFUSION_SPECS["full"]) == tiny_settings().edit
    # no-steering takes away every layout control: the paste start too, not only guidance.
    steered = runtime.settings.edit.model_copy(update={"init": "paste"})
    runtime.settings = runtime.settings.model_copy(update={"edit": steered})
    unsteered = runtime.edit_config(DIFFUSION_SPECS["no-steering"])
    assert unsteered.init == "noise" and unsteered.scale_factor == 0
    assert unsteered.use_concept and unsteered.max_refinement_steps == 0
