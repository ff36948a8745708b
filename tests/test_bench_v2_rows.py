"""World v2's bench rows: `published` takes the published preset's edit settings (the fast
one under --quick), `no-model` runs the default pipeline with no denoising step (no UNet
call, the paste start's pixel passes), and `bench --world v2` writes v2's metrics with
their intervals and the full-minus tables, on the tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from layoutedit.bench.cases import make_cases
from layoutedit.bench.diffusion import DiffusionRuntime
from layoutedit.bench.scoring import METRICS_V2
from layoutedit.bench.variants import DIFFUSION_SPECS, published_spec
from layoutedit.cli.app import app
from layoutedit.config import PRESETS, EditConfig, Settings, resolve_settings
from layoutedit.errors import UserError


def default_like_settings() -> Settings:
    """The shapes-tiny preset's pipeline (paste start, composite, fill, colour matching,
    detail) at a few steps of everything."""
    return Settings.model_validate(
        {
            "scene": PRESETS["shapes-tiny"]["scene"],
            "learn": {"ti_steps": 2, "ti_batch_size": 1, "ti_joint": True, "ft_steps": 2},
            "edit": {
                **PRESETS["shapes-tiny"]["edit"],
                "steps": 4,
                "max_iter_to_alter": 2,
                "refinement": {},
                "max_refinement_steps": 0,
                "blend_steps": 2,
                "seeds": (0, 8),
            },
        }
    )


def test_published_and_no_model_settings() -> None:
    runtime = DiffusionRuntime.__new__(DiffusionRuntime)  # settings only, no model
    runtime.settings = default_like_settings()
    published = runtime.edit_config(published_spec(None))
    assert published == EditConfig()  # the published preset, whatever the run's settings
    fast = runtime.edit_config(published_spec("fast"))
    assert fast == EditConfig.model_validate(PRESETS["fast"]["edit"])
    assert fast.init == "noise" and fast.steps < published.steps
    no_model = runtime.edit_config(DIFFUSION_SPECS["no-model"])
    # The run's pipeline, with no denoising step (and no concept: nothing would read it) and
    # no completer: none of the model's networks.
    assert not no_model.denoise and no_model.init == "paste" and not no_model.use_concept
    assert not no_model.whole_from_model
    assert no_model.model_copy(update={"denoise": True, "use_concept": True}) == (
        runtime.settings.edit
    )
    runtime.settings = resolve_settings("shapes-tiny-v2")
    assert runtime.settings.edit.whole_from_model
    assert not runtime.edit_config(DIFFUSION_SPECS["no-model"]).whole_from_model


def test_no_model_edits_without_a_unet_call(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Every seed's image is the paste start through the VAE and the pixel passes: no UNet
    evaluation, the same image for every seed, the source's own pixels on the untouched
    background (the composite), and a noise start is refused."""
    from layoutedit.backend import get_backend
    from layoutedit.editing.session import EditSession
    from layoutedit.scenes.scene import layout_from_labels

    runtime = DiffusionRuntime(
        str(tiny_model_dir), "cpu", default_like_settings(), tmp_path, tmp_path
    )
    [case] = make_cases(1, seed=0, layouts_per_scene=1, world="v2")
    cfg = runtime.edit_config(DIFFUSION_SPECS["no-model"])
    scene = runtime.scene(case)
    session = EditSession(runtime.load_model(), scene, cfg, get_backend("cpu"))
    result = session.edit(layout_from_labels(case.layout, scene))
    assert result.unet_evaluations["sampling"]["total"] == 0
    assert result.unet_evaluations["inversion"]["total"] == 0
    first, second = (c.image for c in result.candidates)
    assert np.array_equal(first, second)
    untouched = (case.source_labels == case.n_objects) & (case.layout == case.n_objects)
    kept = np.all(first == case.source.image, axis=-1)
    assert kept[untouched].mean() > 0.8  # the composite keeps the source (rims excepted)
    noise = cfg.model_copy(update={"init": "noise"})
    with pytest.raises(UserError, match="init paste"):
        EditSession(runtime.load_model(), scene, noise, get_backend("cpu"))


def test_bench_world_v2_quick_on_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        [
            "--model",
            str(tiny_model_dir),
            "bench",
            "--world",
            "v2",
            "--quick",
            "--variants",
            "full,no-model,paste",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "world v2" in result.output and "revealed" in result.output
    data = json.loads((out / "bench.json").read_text())
    assert data["options"]["world"] == "v2"
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) == {"full", "no-model", "paste"}
    for row in rows.values():
        assert set(row["metrics"]) == set(METRICS_V2) == set(row["intervals"])
    assert rows["no-model"]["unet_evaluations"] == 0 and rows["no-model"]["learn_seconds"] == 0
    assert rows["full"]["unet_evaluations"] > 0
    compared = {(c["variant"], c["metric"]) for c in data["comparisons"]}
    for metric in METRICS_V2:
        assert ("paste", metric) in compared and ("no-model", metric) in compared
    md = (out / "bench.md").read_text()
    assert "| revealed dB |" in md and "World v2 metrics, `full` minus each row" in md
    bad = CliRunner().invoke(app, ["bench", "--world", "v3", "--variants", "paste"])
    assert bad.exit_code == 2 and "--world" in bad.output


def _v2_run(folder: Path, world: str, seam_shift: float) -> Path:
    """A world v2 bench.json of one `full` row (12 edits); `seam_shift` raises its seam error."""
    edits = [
        {
            "variant": "full",
            "case": f"c{i}",
            **{m: 0.5 + 0.01 * (i % 5) for m in METRICS_V2},
            "seam_error": 10.0 + 0.1 * (i % 5) + seam_shift,
        }
        for i in range(12)
    ]
    folder.mkdir(parents=True)
    options = {"scenes": 6, "layouts": 2, "seed": 0, "world": world}
    (folder / "bench.json").write_text(json.dumps({"options": options, "edits": edits}))
    return folder


def test_bench_diff_of_v2_runs_shows_the_v2_metrics(tmp_path: Path) -> None:
    before = _v2_run(tmp_path / "before", "v2", 0.0)
    after = _v2_run(tmp_path / "after", "v2", 2.0)
    runner = CliRunner()
    result = runner.invoke(app, ["bench-diff", str(before), str(after)])
    assert result.exit_code == 0, result.output
    assert "world v2 metrics" in result.output
    line = [row for row in result.output.splitlines() if row.strip().startswith("full")][-1]
    assert "+2-" in line  # seam error up: worse
    v1 = _v2_run(tmp_path / "v1", "v1", 0.0)
    refused = runner.invoke(app, ["bench-diff", str(v1), str(after)])
    assert refused.exit_code == 2 and "world v1 vs v2" in refused.output
