"""The cache under faults (issue #14): `learn` killed 20 times at random moments.

Each run learns one of a few seeds of the same scene (so runs finish, resume and get killed
in every phase: loading, learning, checkpointing, storing), and is killed after a random
delay, mostly with SIGKILL. After every kill each entry the cache serves is compared with
a concept learned without interruption: no bad entry may ever be served. At the end every
seed is learned to completion (resuming what the kills left), `cache verify` must agree
that all is well, and a damaged entry is marked by `cache ls` and evicted on use.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from layoutedit.cli.app import app
from layoutedit.shapes.world import sample_scene, write_scene_folder
from layoutedit_cache import ConceptCache

pytestmark = pytest.mark.slow

KILLS = 20
SEEDS = (0, 1, 2)
STEPS = {"ti_steps": 20, "ft_steps": 20, "checkpoint_every": 2}
ARGS = ["--preset", "fast", "--ti-steps", "20", "--ft-steps", "20", "--checkpoint-every", "2"]


def _references(model_dir: Path, scene_dir: Path, root: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Cache key -> concept tensors of an uninterrupted learn, for every seed."""
    from layoutedit.backend import get_backend
    from layoutedit.config import resolve_settings
    from layoutedit.learning.concept_store import obtain_concept, scene_learn_key
    from layoutedit.loading.model_loading import load_model
    from layoutedit.scenes.scene import load_scene

    out = {}
    for seed in SEEDS:
        overrides = {"learn": {**STEPS, "seed": seed}}
        settings = resolve_settings("fast", None, overrides, model=str(model_dir))
        model = load_model(str(model_dir))
        scene = load_scene(scene_dir, options=settings.scene, latent_size=model.latent_size)
        key = scene_learn_key(model, scene, settings.learn)
        with ConceptCache(root / f"ref-{seed}") as cache:
            got = obtain_concept(model, scene, settings.learn, cache, backend=get_backend("cpu"))
        assert got.key == key
        out[key] = got.concept.tensors()
    return out


def _fresh(cache_dir: Path, since: float) -> bool:
    """Whether a learning checkpoint was written since `since` (the run is learning)."""
    for path in (cache_dir / "learn-checkpoints").glob("*/*/state.json"):
        try:
            if path.stat().st_mtime >= since:
                return True
        except FileNotFoundError:  # replaced by the next checkpoint meanwhile
            continue
    return False


def _served(cache_dir: Path, refs: dict[str, dict[str, torch.Tensor]]) -> tuple[int, int]:
    """(entries served, of them bad): every key in the index through `get`, compared with
    its reference."""
    from layoutedit.learning.concept_store import concept_from_entry

    served = bad = 0
    with ConceptCache(cache_dir, report=lambda line: None) as cache:
        for key in cache.all_keys():
            entry = cache.get(key)
            if entry is None:
                continue
            served += 1
            tensors = concept_from_entry(entry).tensors()
            ref = refs.get(key)
            if ref is None or tensors.keys() != ref.keys():
                bad += 1
                continue
            bad += any(not torch.equal(tensors[k], ref[k]) for k in ref)
    return served, bad


def test_learn_killed_twenty_times_never_serves_a_bad_entry(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    world = sample_scene(7, 2)
    scene = write_scene_folder(world, tmp_path / "scene", [np.roll(world.labels(), 6, axis=1)])
    refs = _references(tiny_model_dir, scene, tmp_path)
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "LAYOUTEDIT_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1"}

    def learn(seed: int, *extra: str) -> list[str]:
        return [sys.executable, "-m", "layoutedit", "--model", str(tiny_model_dir), "learn",
                str(scene), *ARGS, "--seed", str(seed), *extra]  # fmt: skip

    # One whole run of the last seed: its length spreads the kills over every phase (on a
    # busy machine a run takes longer, and so do the delays).
    began = time.monotonic()
    subprocess.run(learn(SEEDS[-1]), env=env, check=True, capture_output=True, timeout=300)
    whole = time.monotonic() - began
    rng = random.Random(14)
    served = bad = 0
    phases: dict[str, int] = {"loading": 0, "learning": 0, "finished": 0}
    for i in range(KILLS):
        seed = SEEDS[i % len(SEEDS)]
        started = time.time()
        # --force on half the runs: learn again and replace a stored entry, so kills also
        # land in the replacing of an entry that others may read.
        extra = ("--force",) if rng.random() < 0.5 else ()
        proc = subprocess.Popen(
            learn(seed, *extra),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        if rng.random() < 0.5:  # any moment of the run
            time.sleep(rng.uniform(0.05, 1.2) * whole)
        else:  # a moment after its first checkpoint: learning, checkpointing or storing
            while proc.poll() is None and not _fresh(cache_dir, started):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.08) * whole)
        if proc.poll() is None:
            phases["learning" if _fresh(cache_dir, started) else "loading"] += 1
            proc.send_signal(signal.SIGKILL if rng.random() < 0.8 else signal.SIGTERM)
        else:
            phases["finished"] += 1
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err, err
        s, b = _served(cache_dir, refs)
        served, bad = served + s, bad + b
    assert bad == 0

    # Every seed to completion: from the cache, or resumed from what the kills left.
    for seed in SEEDS:
        done = subprocess.run(
            learn(seed),
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    s, b = _served(cache_dir, refs)
    assert (s, b) == (len(SEEDS), 0)
    runner = CliRunner()
    verified = runner.invoke(app, ["--cache-dir", str(cache_dir), "cache", "verify", "--fix"])
    assert verified.exit_code == 0 and f"checked {len(SEEDS)} entries: all good" in verified.stdout

    # A damaged entry: marked by `cache ls`, never served, and verify then agrees again.
    with ConceptCache(cache_dir) as cache:
        key = cache.all_keys()[0]
        (artifact,) = (cache.artifacts_dir / key).glob("*.safetensors")
    artifact.write_bytes(artifact.read_bytes()[:-7])
    listed = runner.invoke(app, ["--cache-dir", str(cache_dir), "cache", "ls"])
    assert f"DAMAGED {key[:12]}" in listed.stdout and "truncated" in listed.stdout
    assert _served(cache_dir, refs) == (len(SEEDS) - 1, 0)
    again = runner.invoke(app, ["--cache-dir", str(cache_dir), "cache", "verify"])
    assert again.exit_code == 0 and "all good" in again.stdout
    print(
        f"kill loop: {KILLS} runs ({phases}), {served} entries served and checked after the "
        f"kills, {bad} bad"
    )
