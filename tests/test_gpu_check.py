"""`make gpu-check`'s script, run on the CPU with tiny models (its CUDA parts need a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layoutedit.planning.gpu_check import main, summary_lines


@pytest.mark.slow
def test_gpu_check_self_test_on_the_cpu_writes_one_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code = main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--out",
            str(out),
            "--pytest-args",
            "tests/test_cuda_backend.py",
        ]
    )
    report = json.loads(out.read_text())
    assert code == 0, report
    assert set(report["parts"]) == {"tests", "backends", "sd15"}
    assert all(part["ok"] for part in report["parts"].values())
    rows = report["parts"]["backends"]["result"]["rows"]
    assert [r["backend"] for r in rows] == ["cpu", "cpu-fast"]
    [plain, low] = report["parts"]["sd15"]["result"]["models"]
    assert not plain["low_memory"] and low["low_memory"]
    for phase in plain["phases"]:
        # The same code on meta and on the CPU: planned and measured peaks agree.
        assert phase["peak_ratio"] == pytest.approx(1.0, abs=0.05), phase
        assert phase["seconds_per_step"] > 0
    assert plain["predicted_learn_seconds"] > 0
    assert any("sd15: ok" in line for line in summary_lines(report))


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
