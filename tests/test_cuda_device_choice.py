"""Which GPU a process uses and which attention kernel the CUDA backend takes, tested by
what they read (the environment, a fake xformers) on a machine without a GPU."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable, Iterator

import pytest
import torch

from layoutedit.editing import sharding
from layoutedit.editing.sharding import claim_shard, cuda_device_index, local_rank
from layoutedit_cuda import kernels
from layoutedit_cuda.backend import CudaBackend


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """torch.cuda says two devices, current 0; `set_device` calls are recorded."""
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: chosen[-1] if chosen else 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: chosen.append(int(index)))
    return chosen


def test_local_rank_names_the_cuda_device(two_gpus: list[int]) -> None:
    assert local_rank({}) is None and local_rank({"LOCAL_RANK": "1"}) == 1
    assert cuda_device_index({"LOCAL_RANK": "1"}) == 1
    assert cuda_device_index({}) == 0  # no launcher: the current device
    with pytest.raises(ValueError, match="LOCAL_RANK=2 but this machine has 2"):
        cuda_device_index({"LOCAL_RANK": "2"})
    with pytest.raises(ValueError, match="not a process index"):
        local_rank({"LOCAL_RANK": "x"})


def test_claim_shard_sets_the_local_device_before_dropping_the_variables(
    two_gpus: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    shard = claim_shard()
    assert (shard.rank, shard.world, shard.local_rank) == (3, 4, 1)
    assert two_gpus == [1]
    assert "LOCAL_RANK" not in sharding.os.environ
    # After the variables are gone the backend is on the device claim_shard chose.
    backend = CudaBackend(prefer_xformers=False)
    assert backend.device == torch.device("cuda", 1)


def test_the_cuda_backend_reads_local_rank(
    two_gpus: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert CudaBackend(prefer_xformers=False).device == torch.device("cuda", 1)
    monkeypatch.delenv("LOCAL_RANK")
    assert CudaBackend(prefer_xformers=False).device == torch.device("cuda", 0)


def test_no_local_rank_no_cuda_touches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", called.append)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert claim_shard().local_rank == 1
    assert called == []


@pytest.fixture
def fake_xformers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Callable], None]]:
    """Install a fake `xformers` package whose attention is the given function."""
    monkeypatch.setattr(kernels, "_checked", {})
    monkeypatch.setattr(kernels, "_warned", set())
    monkeypatch.setattr(kernels, "xformers_available", lambda: True)

    def install(attention: Callable) -> None:
        package = types.ModuleType("xformers")
        ops = types.ModuleType("xformers.ops")
        ops.memory_efficient_attention = attention  # type: ignore[attr-defined]
        package.ops = ops  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "xformers", package)
        monkeypatch.setitem(sys.modules, "xformers.ops", ops)

    yield install


def _sdpa_like(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """What a working xformers returns: attention on (B, Q, heads, C) tensors."""
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    )
    return out.transpose(1, 2)


def test_an_xformers_that_imports_but_fails_falls_back_to_sdpa(
    fake_xformers: Callable[[Callable], None], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> torch.Tensor:
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`")

    fake_xformers(broken)
    with caplog.at_level(logging.WARNING, logger="layoutedit_cuda.kernels"):
        assert kernels.kernel_name(True, "cpu") == "sdpa"
        assert kernels.kernel_name(True, "cpu") == "sdpa"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines  # once per process
    assert "\n" not in lines[0]
    assert "does not run" in lines[0] and "using PyTorch SDPA" in lines[0]
    assert "--no-deps" in lines[0]


def test_an_xformers_that_answers_wrongly_falls_back_too(
    fake_xformers: Callable[[Callable], None],
) -> None:
    fake_xformers(lambda q, k, v: torch.zeros_like(q) + 5)
    assert kernels.kernel_name(True, "cpu") == "sdpa"
    assert "disagrees" in (kernels.xformers_failure("cpu") or "")


def test_a_working_xformers_is_chosen(fake_xformers: Callable[[Callable], None]) -> None:
    fake_xformers(_sdpa_like)
    assert kernels.kernel_name(True, "cpu") == "xformers"
    assert kernels.kernel_name(False, "cpu") == "sdpa"


def test_the_cuda_extra_cannot_replace_torch() -> None:
    """The `cuda` extra installs no xformers (each xformers wheel pins one exact torch and
    would replace the user's); the README says how to add a matching one without deps."""
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert not any(req.lower().startswith("xformers") for req in extras["cuda"])
    readme = (root / "README.md").read_text()
    assert "pip install --no-deps xformers" in readme
