"""Shared fixtures: no test touches a real user cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest-xdist's workers start with COLUMNS=80 and LINES=24 in their environment. Rich reads
# them once, when the CLI's consoles are made at import, and would fix every console at 80
# columns for the whole worker, so a test that sets COLUMNS for one call (a wide `cache ls`)
# would pass alone and fail under `make test`. Without xdist they are unset; so here too.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("COLUMNS", "LINES"):
        os.environ.pop(_name, None)

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEED_SAMPLE = SHARED / "seed-sample"


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("LAYOUTEDIT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def seed_sample() -> Path:
    """The published sample scene, read from ../shared; skipped when that folder is absent."""
    if not (SEED_SAMPLE / "image.png").exists():
        pytest.skip("../shared/seed-sample is not present")
    return SEED_SAMPLE


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight pipeline folder in the Stable Diffusion layout (~0.6 MB, 64 px images,
    16x16 latents, 2 heads, 16 tokens), written with `save_pretrained` so the real loader runs."""
    from layoutedit.shapes.architecture import TEST_TINY, build_pipeline_folder

    return build_pipeline_folder(tmp_path_factory.mktemp("tiny-model") / "model", TEST_TINY)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread per test: the tiny models' ops gain nothing from threads, and on a
    shared 2-core machine extra threads made the suite about 10x slower (157 s vs 15 s for
    the edit tests). Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# The end-to-end tests that took 35 s or more each in `pytest -n 2 --durations` on 2 busy
# cores (2026-12-01: the whole suite 1922 s there, these about 2900 of its 3844 worker-
# seconds). They are marked `slow` here, beside those marked in their files: `make test`
# leaves them out and CI runs them in a second step (`make test-slow`). A new test that
# takes this long gets `@pytest.mark.slow` in its own file.
SLOW = {
    "tests/test_demo.py::test_no_seed_before_the_first_v2_demo_seed_takes_the_demo_kinds",
    "tests/test_animation.py::test_run_frames_writes_pngs_gif_and_flicker",
    "tests/test_batch_launch.py::",
    "tests/test_bench_v2_rows.py::test_bench_world_v2_quick_on_the_tiny_model",
    "tests/test_cli_edit.py::test_init_paste_strength_and_detail_flags_choose_the_start",
    "tests/test_cli_edit.py::test_learn_then_edit_writes_every_file",
    "tests/test_cli_operations.py::test_edit_operations_on_the_published_sample",
    "tests/test_cli_operations.py::test_edit_with_operations_writes_the_layout_map",
    "tests/test_cpu_fast_backend.py::test_bench_backends_times_both_on_the_same_cases",
    "tests/test_demo.py::test_demo_command_writes_sheet_gif_and_edits",
    "tests/test_hardening_cli.py::test_library_loading_is_quiet_unless_verbose",
    "tests/test_output_breaches.py::test_an_interrupted_animation_leaves_no_frames",
    "tests/test_readme_commands.py::test_the_readme_runs_the_embedded_model_blocks",
    "tests/test_run_script.py::test_script_learns_and_inverts_once_for_every_step",
    "tests/test_run_sharded.py::test_two_processes_write_the_files_of_one",
    "tests/test_run_sharded.py::test_edit_over_a_layout_folder_splits_between_two_processes",
    "tests/test_sdxl.py::test_sdxl_learns_both_encoders_and_edits_the_same_in_a_fresh_process",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of `SLOW` (a node id, or a file's `path::` for all of its tests)."""
    for item in items:
        node = item.nodeid.split("[", 1)[0]
        if node in SLOW or f"{node.split('::', 1)[0]}::" in SLOW:
            item.add_marker(pytest.mark.slow)
