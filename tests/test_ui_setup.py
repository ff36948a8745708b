"""`make setup-ui` (run by CI) installs gradio and gradio_client without dependencies and the
rest of gradio's requirements with theirs, so Pillow 13 stays; these keep that list right."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# Left to the project's own requirement (gradio's metadata caps it below 13).
NOT_FROM_GRADIO = {"pillow"}


def _make_variable(name: str) -> list[Requirement]:
    """The requirements a Makefile variable `NAME ?= ...` lists (continuation lines joined)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith(f"{name} ?="))
    return [Requirement(item.strip('"')) for item in line.split("?=", 1)[1].split()]


def _by_name(requirements: list[Requirement]) -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in requirements}


def _runtime_requirements(distribution: str) -> list[Requirement]:
    """`distribution`'s installed requirements that apply here (no extras)."""
    env = {**default_environment(), "extra": ""}
    found = [Requirement(r) for r in metadata.requires(distribution) or []]
    return [r for r in found if r.marker is None or r.marker.evaluate(env)]


def test_ci_installs_the_ui_extra_before_the_tests() -> None:
    steps = [x.split("#")[0].strip() for x in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make setup-ui" in steps
    assert steps.index("make setup") < steps.index("make setup-ui") < steps.index("make test")
    pinned = _by_name(_make_variable("UI_NO_DEPS"))
    assert set(pinned) == {"gradio", "gradio-client"}
    for requirement in pinned.values():
        assert str(requirement.specifier).startswith("=="), requirement  # exact pins only
    # The pinned gradio satisfies the `ui` extra that pyproject.toml declares.
    declared = re.search(r'ui = \["gradio([^"]*)"\]', (ROOT / "pyproject.toml").read_text())
    assert declared is not None
    version = str(pinned["gradio"].specifier).removeprefix("==")
    assert Requirement(f"gradio{declared.group(1)}").specifier.contains(version)


def test_setup_ui_lists_what_the_pinned_gradio_requires() -> None:
    pinned = _by_name(_make_variable("UI_NO_DEPS"))
    try:
        installed = metadata.version("gradio")
    except metadata.PackageNotFoundError:
        pytest.skip("gradio is not installed (make setup-ui)")
    if not pinned["gradio"].specifier.contains(installed):
        pytest.skip(f"gradio {installed} is installed, not the pinned {pinned['gradio']}")
    listed = _by_name(_make_variable("UI_DEPS"))
    for requirement in _runtime_requirements("gradio"):
        name = canonicalize_name(requirement.name)
        if name in NOT_FROM_GRADIO:
            continue
        if name in pinned:  # gradio pins its client exactly: the same pin
            assert pinned[name].specifier == requirement.specifier, requirement
            continue
        assert name in listed, f"gradio requires {requirement}; add it to UI_DEPS"
        assert listed[name].specifier == requirement.specifier, (listed[name], requirement)
    for requirement in _runtime_requirements("gradio_client"):
        assert canonicalize_name(requirement.name) in listed, f"gradio_client: {requirement}"
