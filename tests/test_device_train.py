"""The one-call GPU training driver, run here on the CPU with the test-sized model: it trains
within its budget, gates, and packs a model that comes back within the device tool's limits
and installs."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from layoutedit.loading.model_loading import load_model
from layoutedit.shapes import device_train, train, training_io

DEVICE_FILE_LIMIT = 16 * 2**20
DEVICE_FILE_COUNT = 8


def test_packed_parts_join_into_the_same_folder(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text("{}")
    weights = bytes(range(256)) * 40
    (model / "unet" / "weights.bin").write_bytes(weights)
    out = tmp_path / "out"
    out.mkdir()
    parts = device_train.pack_model(model, out, part_bytes=4096)
    assert len(parts) > 2 and all(p.stat().st_size <= 4096 for p in parts)
    (tmp_path / "installed").mkdir()
    (tmp_path / "installed" / "stale.txt").write_text("from the model before")
    installed = device_train.unpack_model(out, tmp_path / "installed")
    assert (installed / "unet" / "weights.bin").read_bytes() == weights
    assert not (installed / "stale.txt").exists()  # replaced whole, not merged


def test_unpacking_refuses_a_path_outside_the_model(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (out / "model.tar.part-0").write_bytes(buffer.getvalue())
    with pytest.raises(tarfile.TarError):
        device_train.unpack_model(out, tmp_path / "installed")
    assert not (tmp_path / "escaped.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing half-unpacked


def test_budget_end_fits_the_remaining_time() -> None:
    # 30 steps in 3 s: 10 steps/s; 57 s left of 60, less 5 %: 541 more steps.
    assert training_io.budget_end(100, 130, 3.0, 60.0) == 130 + 541
    assert training_io.budget_end(0, 30, 90.0, 60.0) == 30  # already over: stop now


def test_one_call_trains_gates_and_packs(tmp_path: Path) -> None:
    model = tmp_path / "model"
    train.main(
        [
            "--run-dir", str(tmp_path / "base"), "--export", str(model), "--size", "test-tiny",
            "--scenes", "8", "--vae-steps", "3", "--vae-batch", "2",
            "--unet-steps", "2", "--unet-batch", "2", "--threads", "1",
        ]
    )  # fmt: skip
    out = tmp_path / "out"
    device_train.main(
        [
            "--out", str(out), "--run-dir", str(tmp_path / "run"), "--device", "cpu",
            "--minutes", "0.0001", "--scenes", "8", "--batch", "2", "--workers", "1",
            "--threads", "1", "--gate-scenes", "2", "--model", str(model),
            "--size", "test-tiny",
        ]
    )  # fmt: skip
    files = sorted(out.iterdir())
    assert len(files) <= DEVICE_FILE_COUNT
    assert all(f.is_file() and f.stat().st_size <= DEVICE_FILE_LIMIT for f in files)
    for gate in ("gate.json", "gate-before.json"):
        assert "presence_colour_and_shape" in json.loads((out / gate).read_text())
    assert "the schedule ends at step" in (out / "train.log").read_text()

    installed = device_train.unpack_model(out, tmp_path / "installed")
    training = json.loads((installed / "TRAINING.json").read_text())
    # The budget was spent after the probe: the run stopped there, not a million steps on.
    assert training["unet_steps"] == 2 + training_io.BUDGET_PROBE
    image = load_model(str(installed)).decode_latents(torch.zeros(1, 4, 16, 16))
    assert image.shape == (1, 64, 64, 3)


def test_unpacking_a_folder_without_parts_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        device_train.main(["--unpack", str(tmp_path), "--to", str(tmp_path / "model")])
    assert stopped.value.code == 2
    assert "no model.tar.part-* files" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_a_model_without_its_training_record_cannot_be_continued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text("{}")  # a pipeline folder, not a recipe export
    for run in (
        lambda: device_train.main(["--out", str(tmp_path / "out"), "--model", str(model)]),
        lambda: train.main(["--run-dir", str(tmp_path / "run"), "--init-from", str(model)]),
    ):
        with pytest.raises(SystemExit) as stopped:
            run()
        assert stopped.value.code == 2
        assert "no TRAINING.json with unet_steps" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing started
