"""Fuzzing `inspect` with generated scene folders and option values (issue #14).

Whatever the scene holds (any image mode, size or format, broken files, noisy or
transparent masks, label maps with arbitrary JSON, layouts with missing objects), `inspect`
keeps the contract: exit 0 or 2, no traceback, one error line, nothing written.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from fuzz_support import SceneSpec, check_contract, scene_specs, snapshot, write_scene
from hypothesis import event, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from layoutedit.cli.app import app

runner = CliRunner()

tolerances = (
    st.none()
    | st.sampled_from(["nan", "inf", "-1", "0", "1e400", "443"])
    | st.floats(min_value=0, max_value=500).map(lambda v: f"{v:g}")
)
latent_sizes = st.none() | st.sampled_from(["0", "-3", "100000", "1", "8", "64"])


def _shape(stderr: str) -> str:
    """An error line without its paths and numbers: the kind of mistake it names."""
    line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    line = re.sub(r"\S*/\S*: ", "", line)
    return re.sub(r"[-\d.]+", "#", line)[:70]


def _kind(spec: SceneSpec) -> str:
    labels = spec.label_map
    if isinstance(labels, str | bytes):
        return "raw text" if isinstance(labels, str) else "bytes"
    return "object" if isinstance(labels, dict) else "other JSON"


@given(
    spec=scene_specs(),
    wild=st.sampled_from([False, False, True]),
    tolerance=tolerances,
    latent=latent_sizes,
    as_json=st.booleans(),
    with_layouts=st.booleans(),
)
def test_inspect_keeps_the_contract(
    spec: SceneSpec,
    wild: bool,
    tolerance: str | None,
    latent: str | None,
    as_json: bool,
    with_layouts: bool,
) -> None:
    if not wild:  # most runs keep the options sane, so clean scenes get all the way
        tolerance, latent, with_layouts = None, None, bool(spec.layouts)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_scene(spec, root / "scene")
        before = snapshot(root)
        args = ["--cache-dir", str(root / "cache")] + (["--json"] if as_json else [])
        args += ["inspect", str(folder)]
        if tolerance is not None:
            args += ["--colour-tolerance", tolerance]
        if latent is not None:
            args += ["--latent-size", latent]
        if with_layouts:
            for path in sorted((folder / "target_layout").glob("*")) or [folder / "nope.png"]:
                args += ["--layout", str(path)]
        result = runner.invoke(app, args)
        check_contract(result)
        assert snapshot(root) == before, "inspect wrote or removed files"
    outcome = "ok" if result.exit_code == 0 else "error"
    event(f"inspect {outcome}")
    event(f"label map {_kind(spec)}")
    event(f"image {spec.image_mode} as {spec.image_format}")
    if result.exit_code != 0:
        event(_shape(result.stderr))
    if result.exit_code == 0 and "warning:" in result.output:
        event("inspect ok with a warning")
