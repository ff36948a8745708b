"""The documentation site's generated pages come from the code, and its navigation is whole.

The configuration and command-line references are generated when the site builds
(`tools/docs_hooks.py`); these tests check the generators against `layoutedit/config.py`
and the CLI, and that `mkdocs.yml`'s navigation names existing pages and every guide page.
The strict build itself (`make docs-build`) runs in CI.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from layoutedit.config import PRESETS, EditConfig, LearnConfig, SceneOptions

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "tools" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_settings_reference_lists_every_field_with_its_default() -> None:
    text = hooks().settings_markdown()
    for section, model in (("scene", SceneOptions), ("learn", LearnConfig), ("edit", EditConfig)):
        defaults = model().model_dump(mode="json")
        for name, field in model.model_fields.items():
            row = next(
                (line for line in text.splitlines() if line.startswith(f"| `{section}.{name}` |")),
                None,
            )
            assert row is not None, f"{section}.{name} missing from the reference"
            assert f"`{defaults[name]}`".replace("|", "\\|") in row
            if field.description:
                assert field.description.replace("|", "\\|") in row


def test_the_presets_reference_lists_every_override_as_toml_would_write_it() -> None:
    text = hooks().presets_markdown()
    for name, sections in PRESETS.items():
        assert f"### `{name}`" in text
        for section, values in sections.items():
            for key, value in values.items():
                assert f"| `{section}.{key}` | `{json.dumps(value)}` |" in text


def test_every_marker_has_a_generator_and_the_markers_are_in_place() -> None:
    module = hooks()
    used = {m for page in DOCS.rglob("*.md") for m in module.MARKER.findall(page.read_text())}
    assert used == set(module.GENERATORS), "a marker without a generator, or one unused"

    class Page:
        class file:
            src_uri = "x.md"

    with pytest.raises(KeyError):
        module.on_page_markdown("<!-- generated: nothing -->", Page, None, None)


def test_the_cli_reference_has_every_command() -> None:
    from typer.main import get_command

    from layoutedit.cli.app import app

    text = hooks().cli_markdown()
    for name in get_command(app).commands:  # type: ignore[attr-defined]
        assert f"## `layoutedit {name}`" in text
    assert "Usage: layoutedit edit" in text


def nav_pages() -> list[str]:
    return re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M)


def test_the_navigation_names_existing_pages_and_every_page_of_the_guide() -> None:
    pages = nav_pages()
    assert pages and all((DOCS / page).is_file() for page in pages)
    # Pages outside the navigation are only the reports under benchmark/ and tuning/,
    # which the benchmark page and the tuning log link.
    outside = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if str(p.relative_to(DOCS)) not in pages and p.parent.name not in ("benchmark", "tuning")
    }
    assert not outside, f"pages missing from mkdocs.yml's nav: {sorted(outside)}"
