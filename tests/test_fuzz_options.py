"""Fuzzing the option checks of `learn` and `edit` in-process (issue #14).

Every option value a user might type (negative, huge, NaN, infinity, not a number), TOML
config files with any values, presets, seeds and layout operations, on clean and broken
scenes. The model named does not exist, so no run gets to learning or sampling: each must
stop with one error line and exit 2, before or at the model, and write nothing.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from fuzz_support import SceneSpec, check_contract, scene_specs, snapshot, write_scene
from hypothesis import event, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.config import EditConfig, LearnConfig, SceneOptions

runner = CliRunner()

# Mostly numbers of the right type (so the settings checks run), now and then text that
# Typer itself refuses.
ints = st.sampled_from(
    ["-1", "0", "1", "3", "1000", "100000", "2147483648", "4294967296", "abc"]
) | st.integers(-(10**12), 10**12).map(str)
floats = st.sampled_from(
    ["nan", "inf", "-inf", "-1", "0", "1e400", "0.5", "1e-9", "5", "1001", "abc"]
) | st.floats(allow_nan=True).map(repr)
INT_FLAGS = {
    "--ti-steps",
    "--ft-steps",
    "--seed",
    "--checkpoint-every",
    "--steps",
    "--blend-steps",
    "--attention-res",
}
seeds = st.sampled_from(["0", "-1", "0,8,88", "1,1", "", ",", "a,b", "4294967296", "0," * 300])
operations = st.text(max_size=20) | st.sampled_from(
    ["obj 0=+4,-2", "obj 0=0.5", "nosuch=1,1", "obj 0=nan,1", "obj 0,obj 1", "=", "obj 0=1e400,0"]
)
toml_scalars = (
    st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.text(max_size=8)
)
toml_values = toml_scalars | st.lists(toml_scalars, max_size=3)
FIELDS = {
    "scene": list(SceneOptions.model_fields),
    "learn": list(LearnConfig.model_fields),
    "edit": list(EditConfig.model_fields),
    "bogus": ["x"],
}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(_toml(v) for v in value) + "]"


@st.composite
def config_texts(draw: st.DrawFn) -> str:
    """A TOML config: known sections and fields with any values, or broken TOML."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(["[learn", "x = ", "[edit]\nrefinement = { a = 1 }", "\x00"]))
    lines = []
    for section in draw(st.lists(st.sampled_from(list(FIELDS)), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        for name in draw(st.lists(st.sampled_from(FIELDS[section]), max_size=3, unique=True)):
            lines.append(f"{name} = {_toml(draw(toml_values))}")
    return "\n".join(lines) + "\n"


@st.composite
def learn_args(draw: st.DrawFn) -> list[str]:
    args: list[str] = []
    for flag in ("--ti-steps", "--ft-steps", "--ti-lr", "--ft-lr", "--seed", "--checkpoint-every"):
        if draw(st.booleans()):
            args += [flag, draw(ints if flag in INT_FLAGS else floats)]
    if draw(st.booleans()):
        args += ["--preset", draw(st.sampled_from(["fast", "published", "shapes-tiny", "nope"]))]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(["--joint", "--sequential", "--prior", "--force"])))
    return args


@st.composite
def edit_args(draw: st.DrawFn) -> list[str]:
    args: list[str] = []
    for flag in (
        "--steps",
        "--guidance-scale",
        "--scale-factor",
        "--blend-steps",
        "--attention-res",
    ):
        if draw(st.booleans()):
            args += [flag, draw(ints if flag in INT_FLAGS else floats)]
    if draw(st.booleans()):
        args += ["--seeds", draw(seeds)]
    if draw(st.booleans()):
        args += ["--preset", draw(st.sampled_from(["fast", "published", "nope"]))]
    for flag in ("--move", "--scale", "--swap", "--box", "--to-front"):
        if draw(st.integers(0, 4)) == 0:
            args += [flag, draw(operations)]
    if draw(st.booleans()):
        args.append(draw(st.sampled_from(["--no-concept", "--no-learn", "--best", "--all"])))
    return args


def _run(spec: SceneSpec, command: str, extra: list[str], config: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_scene(spec, root / "scene")
        args = ["--model", str(root / "no-model"), "--cache-dir", str(root / "cache"), command]
        args += [str(folder), *extra, "--out", str(root / "out")]
        if config is not None:
            (root / "settings.toml").write_text(config)
            args += ["--config", str(root / "settings.toml")]
        before = snapshot(root)
        result = runner.invoke(app, args)
        check_contract(result, allowed=(2,))
        assert snapshot(root) == before, f"{command} wrote or removed files"
    if "--help')" in result.stderr:  # the one line of a usage error names --help
        event(f"{command}: option parsing (Typer) refused a value")
        return
    line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
    line = re.sub(r"\S*/\S*: ", "", line)
    event(f"{command}: " + re.sub(r"[-\d.]+", "#", line)[:60])


@given(spec=scene_specs(), extra=learn_args(), config=st.none() | config_texts())
def test_learn_option_checks_keep_the_contract(
    spec: SceneSpec, extra: list[str], config: str | None
) -> None:
    _run(spec, "learn", extra, config)


@given(spec=scene_specs(), extra=edit_args(), config=st.none() | config_texts())
def test_edit_option_checks_keep_the_contract(
    spec: SceneSpec, extra: list[str], config: str | None
) -> None:
    _run(spec, "edit", extra, config)
