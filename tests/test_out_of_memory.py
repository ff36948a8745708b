"""Running out of memory is one line that says what to do, with exit code 2, whichever phase
it happens in (simulated on the CPU by raising what PyTorch raises)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from cli_support import object_names, run_cli, write_fast_config

from layoutedit.errors import UserError
from layoutedit.out_of_memory import OutOfMemory, is_out_of_memory, phase
from layoutedit.shapes.world import sample_scene, write_scene_folder

CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 11.76 GiB "
    "of which 1.02 GiB is free."
)


def test_what_counts_as_out_of_memory() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError(CUDA_OOM))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        )
    )
    assert not is_out_of_memory(RuntimeError("expected m1 and m2 to have the same dtype"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an allocator's error


def test_a_phase_names_itself_and_an_inner_phase_wins() -> None:
    with pytest.raises(OutOfMemory) as caught, phase("edit"), phase("decode"):
        raise torch.OutOfMemoryError(CUDA_OOM)
    error = caught.value
    assert isinstance(error, UserError) and error.exit_code == 2 and error.phase == "decode"
    assert error.line().startswith("out of memory during decode (tried to allocate 2.00 GiB)")
    assert "--low-memory" in error.line() and "\n" not in error.line()
    with pytest.raises(ZeroDivisionError), phase("edit"):  # other errors pass unchanged
        _ = 1 / 0


def _raise(error: Exception) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


# (phase, what raises there, the advice the line must give)
PHASES = {
    "learn": ("layoutedit.learning.training.Predictor.__call__", "--low-memory"),
    "inversion": ("layoutedit.editing.session.invert", "--low-memory"),
    "edit": ("layoutedit.editing.session.sample", "fewer seeds"),
    "decode": ("layoutedit.loading.model_loading.LoadedModel.decode_latents", "tiles"),
}


@pytest.mark.parametrize("where", sorted(PHASES))
def test_out_of_memory_in_each_phase_is_one_line_and_exit_2(
    where: str, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, advice = PHASES[where]
    error = (
        torch.OutOfMemoryError(CUDA_OOM)
        if where != "edit"
        else RuntimeError("CUDA error: out of memory")
    )
    monkeypatch.setattr(target, _raise(error))
    scene = write_scene_folder(sample_scene(5, 2), tmp_path / "scene")
    cache = tmp_path / "cache"
    if where == "learn":
        config = write_fast_config(tmp_path)
        code, stdout, stderr = run_cli(
            tiny_model_dir, cache, "learn", str(scene), "--config", str(config)
        )
    else:  # plain words: no learning before the phase
        config = write_fast_config(tmp_path, "use_concept = false\n")
        name = object_names(scene)[0]
        out = tmp_path / "out"
        code, stdout, stderr = run_cli(
            tiny_model_dir,
            cache,
            "edit",
            str(scene),
            "--config",
            str(config),
            "--move",
            f"{name}=+4,0",
            "--seeds",
            "0",
            "--out",
            str(out),
        )
        assert not out.exists() or not any(out.rglob("*.png"))  # nothing half written
    # stderr also carries the progress bar of learning; the error is one line of its own.
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert code == 2, (stdout, stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: out of memory during {where}"), lines
    assert advice in lines[0] and "Traceback" not in stderr
