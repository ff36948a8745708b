"""The automatic low-memory choice of `learn` on CUDA: the decision, the cached prediction,
and that nothing changes off CUDA (no GPU is needed: the CUDA query is faked)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from layoutedit.cli import learn_cmd
from layoutedit.cli.app import app
from layoutedit.config import LearnConfig, Settings
from layoutedit.loading.model_loading import load_model
from layoutedit.planning import auto_memory
from layoutedit.planning.archs import load_arch
from layoutedit.planning.auto_memory import (
    GIB,
    MemoryChoice,
    choose_low_memory,
    predicted_learn_peak,
)
from layoutedit.planning.plan import backend_instance, plan_learning
from layoutedit.planning.totals import learn_total


def test_choice_switches_only_when_the_normal_peak_does_not_fit() -> None:
    fits = choose_low_memory(12 * GIB, 10 * GIB, margin=GIB)
    assert fits == MemoryChoice(False, fits.reason)
    assert choose_low_memory(11 * GIB, 10 * GIB, margin=GIB).low_memory is False  # exactly
    tight = choose_low_memory(11 * GIB - 1, 10 * GIB, margin=GIB)
    assert tight.low_memory is True
    assert tight.reason.startswith("switching to --low-memory")
    assert "10.0 GiB" in tight.reason and "11.0 GiB free" in tight.reason
    assert "\n" not in tight.reason


def test_prediction_is_the_planners_and_is_kept_per_model(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = load_model(str(tiny_model_dir), cache_dir=tmp_path)
    cfg = LearnConfig()
    peak = predicted_learn_peak(model, cfg, 2, "cpu", tmp_path)
    # The same as planning the folder's configs (arch_of reads the loaded model's).
    phases = plan_learning(load_arch(str(tiny_model_dir)), cfg, backend_instance("cpu"), 2)
    assert peak == learn_total(phases, cfg, 2).peak_bytes
    assert len(list((tmp_path / "memory-plans").glob("*.json"))) == 1

    def no_planning(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("planned again")

    monkeypatch.setattr("layoutedit.planning.plan.plan_learning", no_planning)
    assert predicted_learn_peak(model, cfg, 2, "cpu", tmp_path) == peak
    with pytest.raises(AssertionError):  # other settings: another plan
        predicted_learn_peak(model, cfg.model_copy(update={"ti_batch_size": 3}), 2, "cpu", tmp_path)


def test_no_choice_off_cuda_or_when_low_memory_is_set() -> None:
    cpu = SimpleNamespace(device=torch.device("cpu"))
    assert auto_memory.learn_memory_choice(cpu, LearnConfig(), 2, "cpu") is None  # type: ignore[arg-type]
    assert auto_memory.free_device_bytes(torch.device("cpu")) is None


def _editor(device: str) -> Any:
    return SimpleNamespace(
        backend=SimpleNamespace(device=torch.device(device), name="cpu"),
        settings=Settings(),
        model=None,
        cache_dir=None,
        cached_concept=lambda scene: None,
    )


def test_learn_switches_on_cuda_and_leaves_the_cpu_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def choice(*args: Any) -> MemoryChoice:
        calls.append(args)
        return MemoryChoice(True, "switching to --low-memory: test")

    monkeypatch.setattr(auto_memory, "learn_memory_choice", choice)
    scene = SimpleNamespace(objects=(1, 2))
    cpu = _editor("cpu")
    learn_cmd._choose_memory(cpu, scene, False, quiet=True)
    assert not calls and cpu.settings == Settings()

    cuda = _editor("cuda")
    learn_cmd._choose_memory(cuda, scene, False, quiet=True)
    assert len(calls) == 1 and calls[0][2] == 2  # two objects
    assert cuda.settings.learn.low_memory is True

    cached = _editor("cuda")
    cached.cached_concept = lambda scene: object()  # reused: no learning, no switch
    learn_cmd._choose_memory(cached, scene, False, quiet=True)
    assert len(calls) == 1 and cached.settings.learn.low_memory is False


def test_help_says_when_low_memory_is_chosen() -> None:
    result = CliRunner().invoke(app, ["learn", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--no-low-memory" in result.output
    assert "free GPU memory" in result.output
