"""What `plan --low-memory` counts: both SDXL text encoders stored in half, the fine-tune's
8-bit Adam moments, and the saving of training only the new embedding rows."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from layoutedit.config import LearnConfig, Settings
from layoutedit.learning import low_memory
from layoutedit.learning.low_memory import learn_overrides, store_frozen
from layoutedit.planning.archs import load_arch
from layoutedit.planning.meta_model import build_plan_model
from layoutedit.planning.optimizers import BLOCK, PlannedAdamW8bit
from layoutedit.planning.plan import backend_instance, low_memory_settings, plan_learning, rows_note
from layoutedit.precision import floating_dtypes


def test_low_memory_stores_both_sdxl_text_encoders_in_half() -> None:
    """The planner's SDXL model had its second encoder outside `model.text_encoders`, so the
    low-memory cast left it fp32: 1.3 GiB more than a loaded SDXL holds."""
    plan = build_plan_model(load_arch("sdxl"), device="meta")
    assert plan.model.text_encoders[1] is plan.text_encoders[1]
    store_frozen(plan.model, torch.float16)
    assert floating_dtypes(plan.text_encoders) == {torch.float16}


def test_planned_8bit_state_is_a_byte_per_element_plus_block_scales() -> None:
    big = torch.nn.Parameter(torch.zeros(64, 256))  # 16384 elements: 8-bit moments
    small = torch.nn.Parameter(torch.zeros(10))  # under 4096 elements: fp32 moments
    optimizer = PlannedAdamW8bit([big, small], lr=1e-3)
    for p in (big, small):
        p.grad = torch.ones_like(p)
    optimizer.step()

    def state_bytes(p: torch.Tensor) -> int:
        values = optimizer.state[p].values()
        return sum(v.numel() * v.element_size() for v in values if v.dim() > 0)

    assert state_bytes(big) == 2 * (big.numel() + 4 * big.numel() // BLOCK)
    assert state_bytes(small) == 2 * 4 * small.numel()
    assert float(big.detach()[0, 0]) == pytest.approx(-1e-3)  # it moves against the gradient


def test_finetune_plan_counts_the_8bit_moments() -> None:
    # The embedded model's K/V weights are 5120-10240 elements, past the 8-bit threshold
    # (the test fixture's are under it).
    arch = load_arch("builtin:shapes-tiny")
    backend = backend_instance("cpu")
    cfg = LearnConfig(ti_batch_size=1, ft_batch_size=1)
    plain = plan_learning(arch, cfg, backend, 2)["fine-tune"].peak["optimizer"]
    cfg8 = cfg.model_copy(update={"optimizer": "adamw8bit"})
    eight = plan_learning(arch, cfg8, backend, 2)["fine-tune"].peak["optimizer"]
    assert 0 < eight < plain / 2


def test_low_memory_on_a_half_backend_plans_8bit_moments() -> None:
    settings = low_memory_settings(Settings(), backend_instance("cuda"))
    assert settings.learn.optimizer == "adamw8bit"
    assert settings.learn.mixed_precision == "fp16" and settings.learn.low_memory
    assert low_memory_settings(Settings(), backend_instance("cpu")).learn.optimizer == "adamw"


def test_learn_low_memory_takes_8bit_moments_only_with_bitsandbytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Half:
        dtype = torch.float16

    monkeypatch.setattr("layoutedit.backend.get_backend", lambda name: Half())
    monkeypatch.setattr(low_memory, "eight_bit_available", lambda: False)
    assert learn_overrides("cuda") == {"low_memory": True, "mixed_precision": "fp16"}
    monkeypatch.setattr(low_memory, "eight_bit_available", lambda: True)
    assert learn_overrides("cuda")["optimizer"] == "adamw8bit"


@pytest.mark.parametrize(("arch", "whole"), [("sd15", "0.42 GiB"), ("sdxl", "1.13 GiB")])
def test_plan_says_what_training_only_the_new_rows_saves(arch: str, whole: str) -> None:
    note = rows_note(load_arch(arch), LearnConfig(), objects=3)
    assert "1 new row(s)" in note and whole in note
    joint = rows_note(load_arch(arch), LearnConfig(ti_joint=True), objects=3)
    assert "3 new row(s)" in joint


def _edit_editor(device: str) -> Any:
    return SimpleNamespace(
        backend=SimpleNamespace(device=torch.device(device), name="cuda"),
        settings=Settings(),
        model=None,
        cache_dir=None,
    )


def test_edit_switches_to_low_memory_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from layoutedit.cli import edit_cmd
    from layoutedit.planning import auto_edit_memory
    from layoutedit.planning.auto_memory import MemoryChoice

    calls: list[Any] = []

    def choice(*args: Any) -> MemoryChoice:
        calls.append(args)
        return MemoryChoice(True, "switching to --low-memory: test")

    monkeypatch.setattr(auto_edit_memory, "edit_memory_choice", choice)
    scene = SimpleNamespace(objects=(1, 2, 3))
    cpu = _edit_editor("cpu")
    edit_cmd.choose_edit_memory(cpu, scene, quiet=True)  # type: ignore[arg-type]
    assert not calls and cpu.settings == Settings()
    cuda = _edit_editor("cuda")
    edit_cmd.choose_edit_memory(cuda, scene, quiet=True)  # type: ignore[arg-type]
    assert len(calls) == 1 and calls[0][2] == 3  # three objects
    assert cuda.settings.edit.low_memory and not cuda.settings.learn.low_memory


def test_edit_choice_plans_the_normal_mode_and_keeps_the_answer(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from layoutedit.config import EditConfig
    from layoutedit.loading.model_loading import load_model
    from layoutedit.planning import auto_edit_memory
    from layoutedit.planning.auto_memory import GIB

    model = load_model(str(tiny_model_dir))
    cfg = EditConfig(steps=2, seeds=(0,))
    peak = auto_edit_memory.predicted_edit_peak(model, cfg, 2, "cpu", tmp_path)
    assert 0 < peak < GIB
    [kept] = (tmp_path / "memory-plans").glob("edit-*.json")
    monkeypatch.setattr(auto_edit_memory, "arch_of", lambda m: pytest.fail("planned again"))
    assert auto_edit_memory.predicted_edit_peak(model, cfg, 2, "cpu", tmp_path) == peak
    assert kept.exists()
    # Off CUDA, or already in low memory: no choice to make.
    assert auto_edit_memory.edit_memory_choice(model, cfg, 2, "cpu") is None
