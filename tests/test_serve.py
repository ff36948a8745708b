"""`layoutedit serve`'s pure parts: binding, paths under the root, upload limits, layouts from
boxes and paintings, one job at a time, and each tab's own state. No Gradio needed."""

from __future__ import annotations

import struct
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.errors import UserError
from layoutedit.serve.actions import parse_seeds
from layoutedit.serve.boxes import (
    ObjectBox,
    box_operations,
    boxes_of,
    labels_from_painting,
    layout_from_boxes,
)
from layoutedit.serve.jobs import JobGate
from layoutedit.serve.safety import check_host, list_scenes, resolve_under
from layoutedit.serve.session import SessionFiles, SessionState
from layoutedit.serve.uploads import read_upload
from layoutedit.shapes.world import sample_scene, write_scene_folder

runner = CliRunner()

# --- binding -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_hosts_need_no_flag(host: str) -> None:
    assert check_host(host, allow_remote=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_remote_hosts_need_allow_remote(host: str) -> None:
    with pytest.raises(UserError, match="--allow-remote"):
        check_host(host, allow_remote=False)
    warning = check_host(host, allow_remote=True)
    assert warning is not None and host in warning


def test_serve_refuses_remote_binding_without_the_flag() -> None:
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0]


# --- paths under the root ----------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root with two scenes and, outside it, a secret scene and a file."""
    base = tmp_path / "root"
    write_scene_folder(sample_scene(0, 2), base / "demo")
    write_scene_folder(sample_scene(1, 2), base / "more" / "other")
    write_scene_folder(sample_scene(2, 2), tmp_path / "secret")
    (tmp_path / "secret.txt").write_text("not for the app")
    (base / "link-out").symlink_to(tmp_path / "secret", target_is_directory=True)
    (base / ".hidden").mkdir()
    return base


def test_scenes_under_the_root_resolve(root: Path) -> None:
    assert resolve_under(root, "demo") == (root / "demo").resolve()
    assert resolve_under(root, "more/other") == (root / "more" / "other").resolve()
    assert list_scenes(root) == ["demo", "more/other"]  # the link out is not listed


@pytest.mark.parametrize(
    "name",
    ["../secret", "../secret.txt", "demo/../../secret", "link-out", "link-out/mask.png", "", "/"],
)
def test_paths_outside_the_root_are_refused(root: Path, name: str) -> None:
    with pytest.raises(UserError) as caught:
        resolve_under(root, name)
    assert "secret" not in caught.value.line().replace(name, "")  # nothing leaks from outside


def test_absolute_path_is_refused_even_inside_the_root(root: Path) -> None:
    with pytest.raises(UserError, match="not a path inside"):
        resolve_under(root, str(root / "demo"))


def test_missing_scene_is_a_user_error(root: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        resolve_under(root, "nothing-here")


# --- uploads -----------------------------------------------------------------------------------


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header then claims `width` x `height` (a decompression bomb's
    header: Pillow reads the size without decoding)."""
    Image.new("L", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_upload_reads_a_normal_photo(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((10, 20, 3), 7, dtype=np.uint8)).save(path)
    assert read_upload(path).shape == (10, 20, 3)


def test_upload_over_the_byte_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    with pytest.raises(UserError, match="MiB limit"):
        read_upload(path, max_bytes=1024)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = png_with_header_size(tmp_path / "bomb.png", 5000, 5000)
    assert bomb.stat().st_size < 1000
    with pytest.raises(UserError, match="decompression bomb") as caught:
        read_upload(bomb)
    assert "5000x5000" in caught.value.line()


def test_pillows_own_bomb_error_becomes_the_same_message(tmp_path: Path) -> None:
    # Over twice Image.MAX_IMAGE_PIXELS: Pillow refuses on opening, whatever our limit.
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 10
    bomb = png_with_header_size(tmp_path / "bomb.png", side, side)
    with pytest.raises(UserError, match="decompression bomb"):
        read_upload(bomb, max_pixels=10**12)


def test_upload_that_is_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_text("hello")
    with pytest.raises(UserError, match="not an image"):
        read_upload(path)


# --- boxes and paintings -------------------------------------------------------------------------


def square_scene_labels() -> np.ndarray:
    labels = np.full((40, 40), 2, dtype=np.int16)
    labels[4:12, 4:12] = 0  # 8x8 square, box centre (8, 8)
    labels[24:32, 20:36] = 1  # 16x8 bar, box centre (28, 28)
    return labels


def test_unchanged_boxes_leave_the_layout_as_it_is() -> None:
    labels = square_scene_labels()
    boxes = boxes_of(labels, 2)
    assert boxes[0] == ObjectBox(0.2, 0.2)
    assert box_operations(labels, ["a", "b"], boxes) == []
    assert np.array_equal(layout_from_boxes(labels, ["a", "b"], boxes), labels)


def test_a_box_moves_and_scales_its_object_only() -> None:
    labels = square_scene_labels()
    boxes = boxes_of(labels, 2)
    boxes[0] = ObjectBox.scaled(0.5, 0.25, 2.0)  # centre to (20, 10), twice the size
    out = layout_from_boxes(labels, ["a", "b"], boxes)
    ys, xs = np.nonzero(out == 0)
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (12, 28, 2, 18)
    assert np.array_equal(out == 1, labels == 1)


def test_a_box_out_of_the_frame_is_refused() -> None:
    labels = square_scene_labels()
    boxes = boxes_of(labels, 2)
    boxes[1] = ObjectBox(1.0, 1.0)
    with pytest.raises(UserError, match="out of frame"):
        layout_from_boxes(labels, ["a", "b"], boxes)


def test_painting_takes_the_nearest_label_colour_and_the_scene_size() -> None:
    palette = [(251, 1, 1), (1, 200, 1), (254, 254, 254)]
    painted = np.full((80, 80, 4), 255, dtype=np.uint8)
    painted[:40, :40, :3] = (240, 10, 20)  # near red: object 0
    painted[40:, 40:, :3] = (5, 190, 8)  # near green: object 1
    painted[:10, 70:, 3] = 0  # transparent: background
    labels = labels_from_painting(painted, palette, (40, 40))
    assert labels.shape == (40, 40)
    assert (labels[:20, :20] == 0).all() and (labels[20:, 20:] == 1).all()
    assert (labels[:5, 35:] == 2).all()


# --- jobs and sessions ----------------------------------------------------------------------------


def test_cancel_only_stops_the_callers_own_job() -> None:
    cancelled: list[bool] = []
    gate = JobGate(lambda: cancelled.append(True))
    assert not gate.cancel("a")  # nothing runs
    with gate.job("a"):
        assert gate.owner == "a"
        assert not gate.cancel("b")
        assert cancelled == [] and not gate.stop_requested
        assert gate.cancel("a")
        assert gate.stop_requested
    assert cancelled == [True] and gate.owner is None
    with gate.job("b"):
        assert not gate.stop_requested  # a new job starts uncancelled


def test_jobs_run_one_at_a_time() -> None:
    gate = JobGate(lambda: None)
    running, overlap = [0], [False]

    def job(name: str) -> None:
        with gate.job(name):
            running[0] += 1
            overlap[0] |= running[0] > 1
            threading.Event().wait(0.01)
            running[0] -= 1

    threads = [threading.Thread(target=job, args=(f"s{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not overlap[0]


def test_two_sessions_do_not_share_state(tmp_path: Path) -> None:
    from layoutedit.scenes.scene import load_scene

    write_scene_folder(sample_scene(0, 2), tmp_path / "a")
    write_scene_folder(sample_scene(1, 2), tmp_path / "b")
    one, two = SessionState(), SessionState()
    assert one.id != two.id
    one.set_scene("a", load_scene(tmp_path / "a"))
    two.set_scene("b", load_scene(tmp_path / "b"))
    one.boxes[0] = ObjectBox(0.5, 0.5)
    assert two.base is not None and two.boxes == boxes_of(two.base, 2)  # untouched
    assert two.scene is not None and two.scene_name == "b"
    assert not np.array_equal(one.target(), two.target())
    with pytest.raises(UserError, match="edit first"):
        one.continue_from()


def test_a_shown_image_is_never_rewritten_under_a_download(tmp_path: Path) -> None:
    # Gradio's own cache truncated and rewrote an image another request was downloading
    # (CI: "Too little data for declared Content-Length"); a shown file must stay whole.
    files = SessionFiles(tmp_path, "tab")
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[4:8, 4:8] = (200, 10, 10)
    first = Path(files.shown(image))
    with first.open("rb") as download:  # a download in progress
        whole = first.read_bytes()
        again = Path(files.shown(image.copy()))
        assert download.read() == whole
    assert again == first and again.read_bytes() == whole
    other = Path(files.shown(image[::-1].copy()))
    assert other != first and other.parent == first.parent == files.folder
    with Image.open(other) as shown:
        assert np.array_equal(np.asarray(shown), image[::-1])


def test_target_needs_a_scene() -> None:
    with pytest.raises(UserError, match="open a scene"):
        SessionState().target()


@pytest.mark.parametrize(("text", "expected"), [("0", [0]), ("0, 8,88", [0, 8, 88]), ("3,3", [3])])
def test_seeds(text: str, expected: list[int]) -> None:
    assert parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["", "a", "-1", ",".join(str(i) for i in range(9))])
def test_bad_seeds(text: str) -> None:
    with pytest.raises(UserError):
        parse_seeds(text)


def test_serve_without_gradio_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    write_scene_folder(sample_scene(0, 2), tmp_path / "demo")
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now fails
    result = runner.invoke(app, ["serve", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert 'pip install "layoutedit[ui]"' in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_serve_scene_must_lie_under_the_root(tmp_path: Path) -> None:
    write_scene_folder(sample_scene(0, 2), tmp_path / "demo")
    (tmp_path / "root").mkdir()
    result = runner.invoke(app, ["serve", str(tmp_path / "demo"), "--root", str(tmp_path / "root")])
    assert result.exit_code == 2
    assert "SCENE must lie under --root" in result.output
