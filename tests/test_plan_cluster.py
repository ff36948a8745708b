"""`layoutedit plan --scenes N --edits E --gpus G`: GPU-hours of a batch from the planner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.config import resolve_settings
from layoutedit.planning.archs import load_arch
from layoutedit.planning.cluster import cluster_plan
from layoutedit.planning.plan import make_plan
from layoutedit.planning.totals import edit_total


def test_gpu_hours_follow_the_planned_flops(tiny_model_dir: Path) -> None:
    settings = resolve_settings("fast")
    plan = make_plan(load_arch(str(tiny_model_dir)), settings, backend="cpu")
    job = cluster_plan(plan, scenes=1000, edits=4, gpus=8, peak_tflops=100.0, utilisation=0.5)
    per_hour = 100e12 * 0.5 * 3600
    assert job.learn_gpu_hours == pytest.approx(1000 * plan.learn_total.flops / per_hour)
    # One inversion per scene plus four edits from it: the uncached edit is one of them.
    first = edit_total(plan.edit_phases, plan.edit).flops
    assert job.inversion_flops > 0 and job.inversion_flops + job.edit_flops == first
    assert job.edit_gpu_hours == pytest.approx(
        1000 * (job.inversion_flops + 4 * job.edit_flops) / per_hour
    )
    assert job.wall_hours == pytest.approx((job.learn_gpu_hours + job.edit_gpu_hours) / 8)
    twice = cluster_plan(plan, scenes=1000, edits=8, gpus=8, peak_tflops=100.0, utilisation=0.5)
    assert twice.learn_gpu_hours == job.learn_gpu_hours
    assert twice.edit_gpu_hours > 1.9 * job.edit_gpu_hours


def test_plan_prints_the_batch_hours(tiny_model_dir: Path) -> None:
    args = ["plan", "--arch", str(tiny_model_dir), "--preset", "fast", "--backend", "cpu"]
    batch = ["--scenes", "100000", "--edits", "4", "--gpus", "8"]
    result = CliRunner().invoke(app, [*args, *batch])
    assert result.exit_code == 0, result.output
    assert "batch of 100,000 scenes x 4 edits at 30% of 312 TFLOPS" in result.output
    assert "GPU-hours" in result.output and "on 8 GPUs" in result.output
    as_json = CliRunner().invoke(app, [*args, *batch, "--json"])
    payload = json.loads(as_json.stdout)["batch"]
    assert payload["scenes"] == 100000 and payload["gpus"] == 8
    assert payload["wall_hours"] == pytest.approx(
        (payload["learn_gpu_hours"] + payload["edit_gpu_hours"]) / 8
    )
    bad = CliRunner().invoke(app, [*args, "--scenes", "10", "--utilisation", "1.5"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
