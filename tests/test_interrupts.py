"""Ctrl-C and SIGTERM: one line saying what was kept, exit 130/143, nothing partial, no cache
entry; and `learn` resumes from its checkpoint after a kill, ending with the same concept.

Real processes on the tiny model (`tiny_model_dir`); the signals are sent at points found
by watching the files a run writes (never by timing alone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from layoutedit.shapes.world import sample_scene, write_scene_folder
from layoutedit_cache import ConceptCache

pytestmark = pytest.mark.slow

LEARN = ["--preset", "fast", "--ti-steps", "40", "--ft-steps", "40", "--checkpoint-every", "4"]


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    world = sample_scene(5, 2)
    moved = np.roll(world.labels(), 8, axis=1)
    return write_scene_folder(world, tmp_path / "scene", [moved])


def start(cache: Path, model: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "LAYOUTEDIT_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "layoutedit", "--model", str(model), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A job started in the background by a non-interactive shell (some CI runners)
        # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt: give
        # the child the default disposition, as a terminal's Ctrl-C would find it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the point"
        time.sleep(0.01)


def checkpoints(cache: Path) -> list[Path]:
    return sorted((cache / "learn-checkpoints").glob("*/*/state.json"))


def leftovers(folder: Path) -> list[Path]:
    """Temporary files and folders of atomic writes (`.name.*tmp*`)."""
    if not folder.exists():
        return []
    return [p for p in folder.rglob("*") if p.name.startswith(".") and "tmp" in p.name]


def stop(proc: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_learn_interrupted_after_a_checkpoint(
    tiny_model_dir: Path, scene: Path, tmp_path: Path, signum: int, code: int
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = start(cache, tiny_model_dir, "learn", str(scene), *LEARN, "--out", str(out))
    wait_for(proc, lambda: bool(checkpoints(cache)))
    returncode, err = stop(proc, signum)
    assert returncode == code, err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and "nothing partial" in last and "Traceback" not in err
    assert "kept the learning checkpoint" in last and "resumes" in last
    assert ConceptCache(cache).all_keys() == []  # no entry
    assert not out.exists() and leftovers(tmp_path) == []
    assert checkpoints(cache)  # the checkpoint stays for the next run


def test_learn_terminated_while_loading(tiny_model_dir: Path, scene: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    proc = start(cache, tiny_model_dir, "learn", str(scene), *LEARN)
    # The cache folder is created when the model's fingerprint is memoised: loading has begun.
    wait_for(proc, lambda: cache.exists())
    returncode, err = stop(proc, signal.SIGTERM)
    assert returncode == 143, err
    assert "interrupted (SIGTERM): nothing partial was written" in err
    assert "Traceback" not in err and "kept the learning" not in err
    assert ConceptCache(cache).all_keys() == [] and leftovers(tmp_path) == []


def test_edit_interrupted_while_sampling(tiny_model_dir: Path, scene: Path, tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "edits"
    args = ["edit", str(scene), "--no-concept", "--preset", "fast", "--out", str(out)]
    args += ["--steps", "60", "--blend-steps", "2", "--seeds", "0,1,2,3,4,5,6,7"]
    proc = start(cache, tiny_model_dir, *args)
    # The source's inversion is cached before sampling starts.
    wait_for(proc, lambda: bool(ConceptCache(cache).all_keys()))
    returncode, err = stop(proc, signal.SIGINT)
    assert returncode == 130, err
    assert "interrupted (SIGINT): nothing partial was written" in err and "Traceback" not in err
    assert not any(out.rglob("*.png")) if out.exists() else True
    assert leftovers(tmp_path) == []
    entries = ConceptCache(cache).entries()  # only the finished inversion, whole
    assert [e.kind for e in entries] == ["inversion"]


def _learn_in_process(
    model_dir: Path, scene_dir: Path, cache_dir: Path
) -> tuple[dict[str, torch.Tensor], list[tuple[str, int, int]]]:
    """Learn the scene as `learn` would with LEARN's settings; (concept tensors, stages)."""
    from layoutedit.backend import get_backend
    from layoutedit.config import resolve_settings
    from layoutedit.learning.concept_store import obtain_concept
    from layoutedit.loading.model_loading import load_model
    from layoutedit.scenes.scene import load_scene

    overrides = {"learn": {"ti_steps": 40, "ft_steps": 40, "checkpoint_every": 4}}
    settings = resolve_settings("fast", None, overrides, model=str(model_dir))
    stages: list[tuple[str, int, int]] = []

    class Record:
        def stage(self, name: str, total: int, done: int) -> None:
            stages.append((name, total, done))

        def step(self, loss: float) -> None:
            pass

    model = load_model(str(model_dir))
    scene = load_scene(scene_dir, options=settings.scene, latent_size=model.latent_size)
    with ConceptCache(cache_dir) as cache:
        result = obtain_concept(
            model, scene, settings.learn, cache, backend=get_backend("cpu"), progress=Record()
        )
    return result.concept.tensors(), stages


def test_learn_resumes_after_a_kill_and_ends_with_the_same_concept(
    tiny_model_dir: Path, scene: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    proc = start(cache, tiny_model_dir, "learn", str(scene), *LEARN)
    ft_state = lambda: [p for p in checkpoints(cache) if p.parent.name == "ft"]  # noqa: E731
    wait_for(proc, lambda: bool(ft_state()))
    proc.kill()  # SIGKILL: no cleanup at all
    proc.communicate()
    import json

    saved = json.loads(ft_state()[0].read_text())["step"]
    assert 0 < saved < 40

    resumed, stages = _learn_in_process(tiny_model_dir, scene, cache)
    ft = [s for s in stages if s[2] > 0]
    assert ft, stages  # a stage started from its checkpoint, not from step 0
    assert ft[-1][2] >= saved
    assert checkpoints(cache) == []  # removed once the entry is stored

    fresh, fresh_stages = _learn_in_process(tiny_model_dir, scene, tmp_path / "fresh")
    assert all(done == 0 for _, _, done in fresh_stages)
    assert resumed.keys() == fresh.keys()
    for name in fresh:
        assert torch.equal(resumed[name], fresh[name]), name
