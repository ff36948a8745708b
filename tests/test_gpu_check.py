"""`make gpu-check`'s script, run on the CPU with tiny models (its CUDA parts need a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layoutedit.planning.gpu_check import main, summary_lines


@pytest.mark.slow
def test_gpu_check_self_test_on_the_cpu_writes_one_report(tmp_path: Path) -> None:
    """Every part of `make gpu-check` on the CPU with tiny models: the code a GPU runs,
    minus the CUDA-only figures."""
    out = tmp_path / "report.json"
    code = main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--out",
            str(out),
            "--budget-s",
            "3600",  # nothing skipped for time on a slow CPU
            "--pytest-args",
            "tests/test_cuda_backend.py",
        ]
    )
    report = json.loads(out.read_text())
    assert code == 0, report
    assert list(report["parts"]) == [
        "sizes",
        "round_trip",
        "oom",
        "planner",
        "tests",
        "backends",
    ]
    assert all(part["ok"] and "skipped" not in part for part in report["parts"].values())
    # SD 1.5's and SDXL's layouts, tiny: loaded in fp16 (the VAE as its config says), the
    # latent and the image finite, two attention kernels agreeing, fp16 guidance as fp32's.
    sizes = report["parts"]["sizes"]["result"]["sizes"]
    assert [s["size"] for s in sizes] == ["sd15", "sdxl"]
    for size in sizes:
        assert size["ok"], size
        assert size["load"]["peak_bytes"] is None and size["load"]["ok_dtype"]  # CUDA only
        assert size["finite"] == {**size["finite"], "latent": True, "image": True}
        assert size["kernels"]["compared"] and size["kernels"]["max_abs_diff"] < 1e-2
        assert size["guidance"]["finite"] and size["guidance"]["cosine_vs_fp32"] >= 0.9
    trip = report["parts"]["round_trip"]["result"]
    assert all(trip["checks"].values()), trip
    oom = report["parts"]["oom"]["result"]
    assert oom["exit_code"] == 2 and oom["simulated"]
    assert oom["error_lines"][0].startswith("error: out of memory during decode")
    rows = report["parts"]["backends"]["result"]["rows"]
    assert [r["backend"] for r in rows] == ["cpu", "cpu-fast"]
    [plain, low] = report["parts"]["planner"]["result"]["models"]
    assert not plain["low_memory"] and low["low_memory"]
    for phase in plain["phases"]:
        # The same code on meta and on the CPU: planned and measured peaks agree.
        assert phase["peak_ratio"] == pytest.approx(1.0, abs=0.05), phase
        assert phase["seconds_per_step"] > 0
    assert plain["predicted_learn_seconds"] > 0
    lines = summary_lines(report)
    assert any(line.startswith("planner: ok") for line in lines)
    assert any("guidance cosine" in line for line in lines)


def test_a_part_that_reports_a_failed_check_fails_and_a_skipped_one_says_why() -> None:
    from layoutedit.planning.gpu_check import _part

    report: dict = {"parts": {}}
    _part(report, "good", lambda: {"ok": True})
    _part(report, "bad", lambda: {"ok": False})
    _part(report, "broken", lambda: 1 / 0)
    assert report["parts"]["good"]["ok"]
    assert not report["parts"]["bad"]["ok"] and "check failed" in report["parts"]["bad"]["error"]
    assert report["parts"]["broken"]["error"].startswith("ZeroDivisionError")
    report["parts"]["late"] = {"ok": True, "skipped": "time budget: 3 s left", "seconds": 0.0}
    lines = summary_lines(report)
    assert "late: skipped (time budget: 3 s left)" in lines
    assert any(line.startswith("bad: FAILED") for line in lines)


def test_gpu_check_refuses_cuda_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()


def test_the_cuda_backends_phases_run_and_match_the_plan_on_the_cpu(tiny_model_dir: Path) -> None:
    """The `sd15` part's code with the cuda backend (fp16 editing weights, its kernels),
    on the CPU with a tiny model: what `make gpu-check` runs on a GPU, minus the GPU."""
    from layoutedit.config import resolve_settings
    from layoutedit.planning.gpu_check import measure_model

    result = measure_model(str(tiny_model_dir), "cpu", "cuda", resolve_settings("fast"), False)
    names = [p["phase"] for p in result["phases"]]
    assert names[:3] == ["vae-encode", "textual-inversion", "fine-tune"]
    assert "guided" in names
    for phase in result["phases"]:
        assert phase["peak_ratio"] == pytest.approx(1.0, abs=0.05), phase
    assert result["predicted_edit_seconds"] > 0
