"""The backend registry and `layoutedit backends`, with fake plugins registered for real."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from layoutedit.backend import get_backend, list_backends, register_backend, unregister_backend
from layoutedit.cli.app import app
from layoutedit.cli.backends_cmd import auto_choice
from layoutedit.errors import UserError

runner = CliRunner()


class _Fake:
    name: ClassVar[str] = "fake"
    description: ClassVar[str] = "a test backend"
    priority: ClassVar[int] = 0
    reason: ClassVar[str | None] = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cls.reason


class FastFake(_Fake):
    name = "fake-fast"
    description = "fast but missing its kernels"
    priority = 1000
    reason = "needs the fakekernels package: pip install fakekernels"


class GoodFake(_Fake):
    name = "fake-good"
    description = "usable and preferred"
    priority = 500


class LowFake(_Fake):
    name = "fake-low"
    priority = -5


@contextlib.contextmanager
def registered(*classes: type[_Fake]) -> Iterator[None]:
    for cls in classes:
        register_backend(cls)  # type: ignore[arg-type]
    try:
        yield
    finally:
        for cls in classes:
            unregister_backend(cls.name)


def test_entry_point_backends_are_listed() -> None:
    names = [info.name for info in list_backends()]
    assert "cpu" in names
    cpu = next(i for i in list_backends() if i.name == "cpu")
    assert cpu.available  # the reference backend works everywhere


def test_list_is_sorted_best_first_and_auto_skips_unusable() -> None:
    with registered(FastFake, GoodFake, LowFake):
        infos = list_backends()
        priorities = [i.priority for i in infos]
        assert priorities == sorted(priorities, reverse=True)
        assert infos[0].name == "fake-fast" and not infos[0].available
        assert auto_choice(infos) == "fake-good"
        assert isinstance(get_backend("auto"), GoodFake)
        assert isinstance(get_backend("fake-low"), LowFake)
    assert "fake-good" not in [i.name for i in list_backends()]


def test_unusable_and_unknown_backends_are_user_errors() -> None:
    with registered(FastFake):
        with pytest.raises(UserError, match="pip install fakekernels"):
            get_backend("fake-fast")
        with pytest.raises(UserError, match="unknown backend 'nope'"):
            get_backend("nope")


def test_backends_command_marks_auto_and_gives_reasons() -> None:
    with registered(FastFake, GoodFake):
        result = runner.invoke(app, ["backends"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    good = next(line for line in lines if "fake-good" in line)
    fast = next(line for line in lines if "fake-fast" in line)
    assert "*" in good and "yes" in good
    assert "*" not in fast and "no" in fast
    assert "fakekernels" in result.stdout


def test_backends_json() -> None:
    with registered(FastFake, GoodFake):
        result = runner.invoke(app, ["--json", "backends"])
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["fake-good"]["auto"] is True and rows["fake-good"]["usable"] is True
    assert rows["fake-fast"] == {
        "name": "fake-fast",
        "description": "fast but missing its kernels",
        "priority": 1000,
        "usable": False,
        "reason": "needs the fakekernels package: pip install fakekernels",
        "edit_s": None,
        "warm_up_s": None,
        "auto": False,
        "auto_serve": False,
    }
    assert sum(row["auto"] for row in rows.values()) == 1
