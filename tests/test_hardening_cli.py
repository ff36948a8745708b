"""Issue #14's small things: global options after the command, each process's share of the
cores, no wrapped paths, quiet library loading, the embedded-model note, help markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from hardening_support import write_scene
from typer.testing import CliRunner

from layoutedit.cli.app import app, hoist_global_options
from layoutedit.cli.common import DEFAULT_MODEL, AppState, scene_notes, thread_share
from layoutedit.scenes.scene import load_scene

runner = CliRunner()


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    return write_scene(tmp_path / "scene")


def test_hoisting_moves_only_global_options_after_the_command() -> None:
    group = typer.main.get_command(app)
    assert hoist_global_options(["learn", "S", "--model", "M", "--ti-steps", "3"], group) == [
        "--model",
        "M",
        "learn",
        "S",
        "--ti-steps",
        "3",
    ]
    assert hoist_global_options(["cache", "ls", "--json", "--cache-dir=/c", "-q"], group) == [
        "--json",
        "--cache-dir=/c",
        "-q",
        "cache",
        "ls",
    ]
    # Before the command, after `--`, and unknown commands: unchanged.
    for args in (
        ["--model", "M", "learn", "S"],
        ["learn", "--", "--json"],
        ["nosuch", "--json"],
        ["--verbose"],
    ):
        assert hoist_global_options(args, group) == args


def test_global_options_work_after_the_command(scene: Path, tmp_path: Path) -> None:
    after = runner.invoke(app, ["inspect", str(scene), "--json"])
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["objects"][0]["name"] == "cat"
    # --model after the command picks that model's prompt template (published for others).
    other = runner.invoke(app, ["inspect", str(scene), "--json", "--model", "some/model"])
    assert json.loads(other.stdout)["prompt"].startswith("a high quality picture of")
    listed = runner.invoke(app, ["cache", "ls", "--cache-dir", str(tmp_path / "c"), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    # A mistake in a moved option is still reported as that option's.
    bad = runner.invoke(app, ["inspect", str(scene), "--backend", "nosuch"])
    assert bad.exit_code == 2 and "unknown backend 'nosuch'" in bad.stderr


def test_thread_share() -> None:
    assert thread_share({"OMP_NUM_THREADS": "3"}, cores=16) == 3
    assert thread_share({"OMP_NUM_THREADS": "3", "LOCAL_WORLD_SIZE": "8"}, cores=16) == 3
    assert thread_share({"LOCAL_WORLD_SIZE": "2"}, cores=8) == 4
    assert thread_share({"LOCAL_WORLD_SIZE": "16"}, cores=2) == 1
    assert thread_share({}, cores=6) == 6
    assert thread_share({"OMP_NUM_THREADS": "x", "LOCAL_WORLD_SIZE": "0"}, cores=4) == 4


def test_each_process_gets_its_share_of_the_cores(tmp_path: Path) -> None:
    probe = (
        "import os, sys\n"
        "from layoutedit.cli.app import main\n"
        "sys.argv = ['layoutedit', 'backends']\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "import torch\n"
        "print('THREADS', torch.get_num_threads(), len(os.sched_getaffinity(0)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(LOCAL_WORLD_SIZE="2", LAYOUTEDIT_CACHE_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout
    threads, cores = (int(v) for v in out.split("THREADS")[1].split())
    assert threads == max(1, cores // 2)


def test_long_paths_are_never_wrapped(tmp_path: Path) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 6) / "cache"
    out = runner.invoke(app, ["--cache-dir", str(deep), "cache", "ls"])
    assert out.exit_code == 0
    assert f"no cache entries in {deep}\n" in out.stdout  # one line, the path whole


def test_library_loading_is_quiet_unless_verbose(tiny_model_dir: Path) -> None:
    probe = (
        "import sys\n"
        "from layoutedit.logs import configure_library_logging\n"
        "configure_library_logging(sys.argv[1] == 'verbose')\n"
        "from transformers import CLIPTextModel\n"
        "CLIPTextModel.from_pretrained(sys.argv[2])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE",)}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    runs = {
        mode: subprocess.run(
            [sys.executable, "-c", probe, mode, str(tiny_model_dir / "text_encoder")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stderr
        for mode in ("quiet", "verbose")
    }
    assert "Loading weights" not in runs["quiet"]
    assert "Loading weights" in runs["verbose"]  # the probe can see the bar


def test_embedded_model_note_for_a_photo(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = write_scene(tmp_path / "big", size=256)
    model = SimpleNamespace(spec=DEFAULT_MODEL, image_size=64, tokenizer=None, max_length=77)
    app_state = AppState(cache_dir=tmp_path)
    notes = []
    for folder, spec in ((big, DEFAULT_MODEL), (scene, DEFAULT_MODEL), (big, "my/sd15")):
        model.spec = spec
        loaded = load_scene(folder)
        # the prompt-length check needs a tokenizer: stand in one that counts words
        model.tokenizer = _WordTokenizer()
        scene_notes(app_state, loaded, model)
        notes.append(capsys.readouterr().err)
    assert "knows only its 64 px" in notes[0] and "--model" in notes[0] and "256x256" in notes[0]
    assert notes[0].count("note:") == 1
    assert "note:" not in notes[1]  # a 32 px scene is shapes-sized
    assert "note:" not in notes[2]  # another model


class _WordTokenizer:
    """Just enough of a Hugging Face tokenizer for `prompt_length_warning`."""

    def get_vocab(self) -> dict[str, int]:
        return {}

    def add_tokens(self, tokens: list[str]) -> int:
        return len(tokens)

    def __call__(self, text: str, truncation: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [0] * (len(text.split()) + 2)}


def test_bench_help_shows_the_sweep_table_name() -> None:
    out = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "`[res16]`" in out.stdout and "e.g. `` with" not in out.stdout


def test_oldest_pins_are_the_lower_bounds() -> None:
    """`make test-oldest` installs exactly the oldest versions pyproject.toml claims."""
    import re

    import tomllib
    from packaging.version import Version

    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    line = next(x for x in makefile.splitlines() if x.startswith("OLDEST_PINS"))
    pins = dict(re.findall(r'"([a-z_-]+)==([\w.]+)"', line))
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = dict(re.findall(r"^([a-z_-]+)>=([\w.]+)$", "\n".join(deps), re.MULTILINE))
    assert set(pins) == {"diffusers", "transformers", "accelerate"}
    for name, version in pins.items():
        assert Version(version) == Version(bounds[name]), name
