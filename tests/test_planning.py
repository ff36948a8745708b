"""The cost planner: meta-device figures against a real CPU run, categories, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.config import EditConfig, LearnConfig, resolve_settings
from layoutedit.errors import UserError
from layoutedit.planning.archs import load_arch
from layoutedit.planning.plan import backend_instance, plan_editing, plan_learning
from layoutedit.planning.tracker import MemoryTracker

FAST_LEARN = LearnConfig(ti_batch_size=2, ft_batch_size=1)
FAST_EDIT = EditConfig(steps=4, seeds=(0,))
FLOP_TOLERANCE = 0.01  # meta-device FLOPs vs FlopCounterMode on a real model
MEMORY_TOLERANCE = 0.02  # meta-device peak vs the same tracker on real CPU tensors


def test_tracker_attributes_weights_gradients_and_optimizer_state() -> None:
    layer = torch.nn.Linear(256, 256, bias=False)  # 256 KiB of fp32 weight
    tracker = MemoryTracker(device_type="cpu")
    tracker.track_module(layer, "weights")
    optimizer = torch.optim.AdamW(layer.parameters())
    handles = tracker.watch_gradients(list(layer.parameters()))
    with tracker:
        layer(torch.ones(8, 256)).sum().backward()
        with tracker.as_category("optimizer"):
            optimizer.step()
    tracker.track_optimizer(optimizer)
    for handle in handles:
        handle.remove()
    size = 256 * 256 * 4
    assert tracker.live["weights"] == size
    assert tracker.live["gradients"] == size
    assert tracker.live["optimizer"] >= 2 * size  # exp_avg and exp_avg_sq
    assert tracker.peak_total >= 4 * size


def test_tracker_frees_what_dies() -> None:
    tracker = MemoryTracker(device_type="meta")
    with tracker:
        x = torch.ones(1024, device="meta")
        y = x * 2
        assert tracker.live["activations"] == 2 * 4096
        del x, y
    assert tracker.live["activations"] == 0
    assert tracker.peak_total == 2 * 4096


def test_known_architectures_read_their_family() -> None:
    assert load_arch("sd15").image_size == 512
    sd21 = load_arch("sd21")
    assert (sd21.family, sd21.prediction_type, sd21.image_size) == ("sd2", "v_prediction", 768)
    sdxl = load_arch("sdxl")
    assert (sdxl.family, len(sdxl.text_encoders), sdxl.image_size) == ("sdxl", 2, 1024)
    with pytest.raises(UserError):
        load_arch("sd99")


@pytest.mark.parametrize("backend", ["cpu", "cpu-fast"])
def test_meta_plan_matches_a_real_cpu_run(tiny_model_dir: Path, backend: str) -> None:
    """Same phases on `meta` and on a real random-weight model: with the `cpu` reference,
    FLOPs within 1 % of FlopCounterMode's count of the real run and peak memory within 2 %
    of the real tensors'. With `cpu-fast` the planner models SDPA as a fused kernel and the
    real run uses PyTorch's CPU flash kernel: memory within 25 %."""
    arch = load_arch(str(tiny_model_dir))
    instance = backend_instance(backend)
    planned = {
        **plan_learning(arch, FAST_LEARN, instance, 2),
        **plan_editing(arch, FAST_EDIT, instance, 2),
    }
    measured = {
        **plan_learning(arch, FAST_LEARN, instance, 2, device="cpu", check_flops=True),
        **plan_editing(arch, FAST_EDIT, instance, 2, device="cpu", check_flops=True),
    }
    tolerance = MEMORY_TOLERANCE if backend == "cpu" else 0.25
    for name, real in measured.items():
        plan = planned[name]
        if backend == "cpu":
            if real.reference_flops is not None:
                assert plan.flops == pytest.approx(real.reference_flops, rel=FLOP_TOLERANCE)
            assert plan.flops == pytest.approx(real.flops, rel=FLOP_TOLERANCE), name
        else:
            # FlopCounterMode has no formula for the CPU flash kernel the real run uses, so
            # only the planner (which models the fused kernel) counts attention's FLOPs.
            assert plan.flops >= real.flops, name
        assert plan.peak_total == pytest.approx(real.peak_total, rel=tolerance), name
    assert measured["textual-inversion"].peak["optimizer"] > 0
    assert measured["fine-tune"].reference_flops is not None


@pytest.mark.slow
def test_plan_sd15_fits_the_8gb_goal_with_low_memory() -> None:
    runner = CliRunner()
    before = runner.invoke(app, ["plan", "--arch", "sd15", "--json"])
    after = runner.invoke(app, ["plan", "--arch", "sd15", "--low-memory", "--json"])
    assert before.exit_code == 0, before.output
    assert after.exit_code == 0, after.output
    plain, low = json.loads(before.output), json.loads(after.output)
    gib = 2**30
    assert low["learn_total"]["peak_bytes"] < plain["learn_total"]["peak_bytes"]
    assert low["learn_total"]["peak_bytes"] <= 8 * gib
    assert low["edit_total"]["peak_bytes"] <= 6 * gib
    # published schedule: 50 inversion + 5 seeds x (50 x 2 + 25 guided) forwards at least
    assert plain["edit_total"]["unet_forward"][0] == 50 + 5 * (100 + 25)


def test_plan_table_prints_and_bad_arch_is_one_line(tiny_model_dir: Path) -> None:
    runner = CliRunner()
    args = ["plan", "--arch", str(tiny_model_dir), "--preset", "fast", "--backend", "cpu"]
    result = runner.invoke(app, [*args, "--tflops", "0.1"])
    assert result.exit_code == 0, result.output
    assert "at 0.1 TFLOPS: learn about" in result.output
    assert "learn: peak" in result.output and "MiB in" in result.output
    assert "edit: peak" in result.output
    bad = runner.invoke(app, ["plan", "--arch", "nonsense"])
    assert bad.exit_code == 2
    assert "unknown architecture" in bad.output
    assert "Traceback" not in bad.output


def test_settings_resolve_low_memory() -> None:
    settings = resolve_settings("published", overrides={"learn": {"low_memory": True}})
    assert settings.learn.low_memory and not settings.edit.low_memory


@pytest.mark.parametrize("command", ["learn", "inspect"])
def test_help_names_the_supported_model_families(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Stable Diffusion 1.x and 2.x" in result.output and "SDXL" in result.output


def test_planned_unet_evaluations_bracket_a_real_edit(tiny_model_dir: Path) -> None:
    """The plan's forward/backward counts (a range: refinement passes vary) contain what an
    edit of the tiny model really counts with `UNetCounter`."""
    from edit_support import fast_config, load_tiny, moved_layout, shapes_scene

    from layoutedit.backend import get_backend
    from layoutedit.editing.session import edit
    from layoutedit.planning.totals import edit_total

    cfg = fast_config(seeds=(0, 8))
    scene = shapes_scene()
    for name in ("cpu", "cpu-fast"):
        [result] = edit(
            load_tiny(tiny_model_dir), scene, [moved_layout(scene)], cfg, get_backend(name)
        )
        real = result.unet_evaluations
        forward = real["inversion"]["forward"] + real["sampling"]["forward"]
        backward = real["sampling"]["backward"]
        phases = plan_editing(load_arch(str(tiny_model_dir)), cfg, backend_instance(name), 2)
        total = edit_total(phases, cfg)
        assert total.forward[0] <= forward <= total.forward[1], name
        assert total.backward[0] <= backward <= total.backward[1], name


def test_planned_unet_evaluations_of_a_paste_start(tiny_model_dir: Path) -> None:
    """A paste start runs only the steps its strength leaves (as the shapes-tiny preset does):
    the plan counts those, not every step (it planned 250-340 forwards for a shapes-tiny edit
    that makes 145)."""
    from edit_support import fast_config, load_tiny, moved_layout, shapes_scene

    from layoutedit.backend import get_backend
    from layoutedit.config import resolve_settings
    from layoutedit.editing.session import edit
    from layoutedit.planning.totals import edit_total, first_step

    cfg = fast_config(
        seeds=(0, 8), init="paste", paste_strength=0.5, max_iter_to_alter=5, refinement={4: 0.99}
    )
    assert first_step(cfg) == 3
    scene = shapes_scene()
    model = load_tiny(tiny_model_dir)
    [result] = edit(model, scene, [moved_layout(scene)], cfg, get_backend("cpu"))
    real = result.unet_evaluations
    forward = real["inversion"]["forward"] + real["sampling"]["forward"]
    backward = real["sampling"]["backward"]
    phases = plan_editing(load_arch(str(tiny_model_dir)), cfg, backend_instance("cpu"), 2)
    total = edit_total(phases, cfg)
    assert total.forward[0] <= forward <= total.forward[1]
    assert total.backward[0] <= backward <= total.backward[1]
    assert total.forward[0] == 6 + 2 * (3 * 2 + 2)  # inversion 6, per seed 3 steps x 2 + 2 guided
    # The shapes-tiny preset: 10 inversion steps, per seed 4 steps with no unconditional
    # prediction (guidance scale 1) and 4 guided passes.
    tiny = edit_total(phases, resolve_settings("shapes-tiny").edit)
    assert tiny.forward[0] + tiny.backward[0] == 10 + 3 * (4 + 4) + 3 * 4
