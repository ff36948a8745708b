"""Issue #20, items 4 and 5: an interrupt while the CLI starts is one line; a config value
of the wrong type names its key; a path option given a file for a folder (or the reverse)
fails before any model work."""

from __future__ import annotations

import importlib.abc
import os
import signal
import sys
from pathlib import Path

import pytest
from cli_support import run_cli
from hardening_support import write_scene

NO_MODEL = "/nonexistent/model-folder"


def _one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


class _SignalOnImport(importlib.abc.MetaPathFinder):
    """Sends this process `signum` when `layoutedit.cli.app` is imported: a Ctrl-C or
    SIGTERM that arrives while the CLI's modules load."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "layoutedit.cli.app":
            os.kill(os.getpid(), self.signum)
        return None


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_cli_is_imported_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], signum: int, code: int
) -> None:
    from layoutedit.cli import entry

    monkeypatch.delitem(sys.modules, "layoutedit.cli.app")
    monkeypatch.setattr(sys, "meta_path", [_SignalOnImport(signum), *sys.meta_path])
    previous = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    # Python's own Ctrl-C handling, as a shell starts the CLI: an earlier test in this
    # process (or the runner) may have left SIGINT with another handler or ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stop:
            entry.main()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    assert stop.value.code == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"interrupted ({signal.Signals(signum).name})" in err


def test_the_console_script_and_python_m_start_at_the_entry() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["layoutedit"] == "layoutedit.cli.entry:main"
    main = (Path(__file__).parents[1] / "layoutedit" / "__main__.py").read_text()
    assert "layoutedit.cli.entry" in main


# --- config values of the wrong type ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("edit = [1]", "`edit`"),
        ("learn = 3", "`learn`"),
        ('scene_options = "x"', "`scene_options`"),
        ("out = 3", "`out`"),
        ('out = ""', "`out`"),
        ('seeds = "0,8"', "edit.seeds"),
        ('preset = ["fast"]', "`preset`"),
        ('frames = "2"', "`frames`"),
    ],
)
def test_a_script_value_of_the_wrong_type_names_its_key(
    tmp_path: Path, line: str, key: str
) -> None:
    write_scene(tmp_path / "scene")
    script = tmp_path / "script.toml"
    script.write_text(f'scene = "scene"\n{line}\n[[step]]\nmove = ["cat=+1,0"]\n')
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "run", str(script))
    _one_line(code, err, key, str(script))


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("move = 3", "`move`"),
        ("ops = [1]", "`ops`"),
        ("layout = 3", "`layout`"),
        ('name = true\nmove = ["cat=+1,0"]', "`name`"),
    ],
)
def test_a_step_value_of_the_wrong_type_names_its_key_once(
    tmp_path: Path, table: str, key: str
) -> None:
    write_scene(tmp_path / "scene")
    script = tmp_path / "script.toml"
    script.write_text(f'scene = "scene"\n[[step]]\n{table}\n')
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "run", str(script))
    _one_line(code, err, key, "step 1")
    assert err.count("step 1") == 1, err


@pytest.mark.parametrize(
    "text",
    ["edit = [1]", "edit = 3", '[edit]\nsteps = "ten"', "[edit]\nrefinement = 5", 'learn = "x"'],
)
def test_a_config_file_value_of_the_wrong_type_is_one_line(tmp_path: Path, text: str) -> None:
    scene = write_scene(tmp_path / "scene")
    config = tmp_path / "c.toml"
    config.write_text(text + "\n")
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "learn", str(scene), "--config", str(config))
    _one_line(code, err, str(config))


# --- path options: file or folder, before the model ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["learn", "SCENE", "--prior-dir", "FILE"], ["--prior-dir", "takes a folder"]),
        (["learn", "SCENE", "--model-config", "FILE"], ["--model-config", "takes a folder"]),
        (["learn", "SCENE", "--prior-dir", "MISSING"], ["--prior-dir", "not found"]),
        (["learn", "SCENE", "--out", "FILE"], ["is a file"]),
        (["edit", "SCENE", "--concept", "FILE"], ["is a file", "concept folder"]),
        (["edit", "SCENE", "--out", "FILE"], ["is a file"]),
        (["learn", "SCENE", "--config", "DIR"], ["is a folder"]),
        (["edit", "SCENE", "--out", "FILE/sub"], ["lies under"]),
        (["inspect", "SCENE", "--tokenizer", "DIR"], ["no CLIP tokenizer"]),
        (["mask", "FILE", "--objects", "a", "--out", "x", "--segmenter", "FILE"], ["--segmenter"]),
    ],
)
def test_path_options_are_checked_before_any_model_work(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    scene = write_scene(tmp_path / "scene")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.png").write_bytes((scene / "image.png").read_bytes())
    names = {
        "SCENE": str(scene),
        "FILE": str(tmp_path / "file.png"),
        "FILE/sub": str(tmp_path / "file.png" / "sub"),
        "DIR": str(tmp_path / "dir"),
        "MISSING": str(tmp_path / "missing"),
    }
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", *[names.get(a, a) for a in args])
    _one_line(code, err, *words)
    assert "model not found" not in err


# --- near misses: images, labels, frames --------------------------------------------------------


def test_an_animated_image_is_refused_wherever_it_is_given(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    scene = write_scene(tmp_path / "scene")
    first = Image.open(scene / "image.png").convert("RGB")
    second = Image.fromarray(255 - np.asarray(first))
    gif = tmp_path / "moving.gif"
    first.save(gif, save_all=True, append_images=[second], duration=100)
    files = ["--mask", str(scene / "mask.png"), "--labels", str(scene / "semantic_dict.json")]
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "inspect", "--image", str(gif), *files)
    _one_line(code, err, "2 frames")
    code, _, err = run_cli(
        NO_MODEL, tmp_path / "c", "mask", str(gif), "--objects", "a", "--out", str(tmp_path / "m")
    )
    _one_line(code, err, "2 frames")


def test_a_label_with_spaces_at_its_ends_is_refused(tmp_path: Path) -> None:
    labels = {" cat ": [250, 20, 20], "pot": [20, 250, 20], "background": [255, 255, 255]}
    scene = write_scene(tmp_path / "scene", labels=labels)
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "inspect", str(scene))
    _one_line(code, err, "spaces at its ends")


def test_frames_have_an_upper_bound(tmp_path: Path) -> None:
    write_scene(tmp_path / "scene")
    script = tmp_path / "script.toml"
    script.write_text('scene = "scene"\n[[step]]\nmove = ["cat=+1,0"]\n')
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "run", str(script), "--frames", "100000")
    _one_line(code, err, "--frames")
    script.write_text('scene = "scene"\nframes = 100000\n[[step]]\nmove = ["cat=+1,0"]\n')
    code, _, err = run_cli(NO_MODEL, tmp_path / "c", "run", str(script))
    _one_line(code, err, "`frames`")


def test_a_large_image_brings_no_raw_library_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from PIL import Image

    scene = write_scene(tmp_path / "scene", size=40)
    # Pillow warns between its pixel limit and twice it (89 to 179 Mpx); a lower limit makes
    # the same case from a small image.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = run_cli(NO_MODEL, tmp_path / "c", "inspect", str(scene))
    assert code == 0, err
    assert not [w for w in seen if issubclass(w.category, Image.DecompressionBombWarning)]
    assert "DecompressionBomb" not in err
