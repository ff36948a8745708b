"""How the web app's `ui` extra gets installed: CI installs it the way the README says
(`pip install -e ".[ui]"`, then `pip check`) and Debian's Chromium for the browser tests,
and the extra's own pins agree with what they install (the box editor's gradio range)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _steps(path: Path) -> list[str]:
    """The commands of a shell script or a make recipe, comments and blanks left out."""
    lines = [x.split("#")[0].strip() for x in path.read_text().splitlines()]
    return [x for x in lines if x]


def _extra(name: str) -> dict[str, Requirement]:
    import tomllib  # Python 3.11+, as the suite runs

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["optional-dependencies"][name]]
    return {canonicalize_name(r.name): r for r in found}


def _recipe(target: str) -> list[str]:
    """The command lines of a Makefile target."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match is not None, target
    return [line.strip() for line in match.group(1).splitlines()]


def test_ci_installs_chromium_and_the_ui_extra_before_the_tests() -> None:
    steps = _steps(ROOT / ".ci" / "run")
    apt = next(i for i, s in enumerate(steps) if "apt-get install" in s)
    assert "chromium" in steps[apt].split() and "chromium-driver" in steps[apt].split()
    assert "export LAYOUTEDIT_BROWSER_TESTS=required" in steps
    order = [steps.index(s) for s in ("make setup", "make setup-ui", "make test")]
    assert apt < order[0] < order[1] < order[2]


def test_setup_ui_is_the_readme_install() -> None:
    recipe = _recipe("setup-ui")
    install = next(line for line in recipe if "pip install" in line)
    assert '-e ".[ui]"' in install and "--no-deps" not in install
    assert '"torch==2.13.*"' in install  # the CPU build `make setup` installed stays
    assert any(line.endswith("-m pip check") for line in recipe)
    readme = (ROOT / "README.md").read_text()
    assert 'pip install ".[ui]"' in readme


def test_the_ui_extra_names_the_box_editor_and_a_gradio_it_runs_on() -> None:
    extra = _extra("ui")
    assert set(extra) == {"gradio", "gradio-image-annotation"}
    assert "selenium" in _extra("dev")  # the browser tests' driver
    try:
        needed = metadata.requires("gradio_image_annotation") or []
    except metadata.PackageNotFoundError:
        pytest.skip("gradio-image-annotation is not installed (make setup-ui)")
    editor_gradio = next(Requirement(r) for r in needed if Requirement(r).name == "gradio")
    # Every gradio the extra allows, the box editor allows too (checked at the bounds).
    bounds = [s.version for s in extra["gradio"].specifier]
    for version in bounds:
        if extra["gradio"].specifier.contains(version):
            assert editor_gradio.specifier.contains(version), (version, editor_gradio)
    installed = metadata.version("gradio")
    assert extra["gradio"].specifier.contains(installed)
    assert extra["gradio-image-annotation"].specifier.contains(
        metadata.version("gradio_image_annotation")
    )
