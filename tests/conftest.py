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
