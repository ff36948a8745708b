"""gpu-check's whole-command checks: the learn/edit round trip in one process and a forced
out-of-memory through the real CLI.

- `round_trip`: one `Editor` learns a scene in low memory (`learn --low-memory`'s settings:
  checkpointing, on CUDA fp16 frozen weights), edits it without them (the concept must come
  from the cache: memory-only settings are not part of its key), then learns it again in
  the normal mode (fp32, `force`) in the same process, after the fp16 edit model.
- `forced_oom`: `layoutedit edit` in a subprocess whose CUDA allocator may use a small share
  of the GPU (`torch.cuda.set_per_process_memory_fraction`); it must print one `error:`
  line and exit 2. On the CPU (the self-test) the decoder raises what PyTorch raises.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_PRELUDE = """
import sys
import torch
mode = sys.argv.pop(1)
if mode == "cuda":
    torch.cuda.set_per_process_memory_fraction(float(sys.argv.pop(1)))
else:
    from layoutedit.loading import model_loading

    def full(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (simulated)")

    model_loading.LoadedModel.decode_latents = full
sys.argv[0] = "layoutedit"
from layoutedit.cli.app import main
main()
"""
"""Run as `python -c _PRELUDE MODE [FRACTION] ARGS...`: the allocator limited (or, on the
CPU, the decode failing as an allocator does), then the CLI with ARGS."""


def scene_folder(folder: Path) -> tuple[Path, str]:
    """A two-object shapes scene written as a scene folder, and its first object's name."""
    from layoutedit.shapes.world import sample_scene, write_scene_folder

    world = sample_scene(5, 2)
    return write_scene_folder(world, folder), str(world.names[0])


def round_trip(
    model: str, backend: str, cache_dir: Path, work: Path, settings: Any
) -> dict[str, Any]:
    """Learn in low memory -> edit (a cache hit) -> learn in the normal mode, one `Editor`.

    Args:
        model: `--model` (the embedded model on a GPU, a tiny folder in the self-test).
        backend: backend name.
        cache_dir: an empty concept cache.
        work: where the scene folder goes.
        settings: resolved settings (their learn section is the normal mode).
    """
    from layoutedit.editor import Editor
    from layoutedit.learning.low_memory import learn_overrides
    from layoutedit_cache import ConceptCache

    folder, name = scene_folder(work / "round-trip-scene")
    low_learn = settings.learn.model_copy(update=learn_overrides(backend))
    low = settings.model_copy(update={"learn": low_learn})
    editor = Editor(model=model, backend=backend, cache_dir=cache_dir, settings=low)
    scene = editor.scene(folder)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    learned = editor.obtain(scene)
    seconds["learn_low_memory"] = time.perf_counter() - began
    editor.settings = settings
    began = time.perf_counter()
    # learn=False: a miss (another key) raises ConceptMissing instead of learning again.
    outcome = editor.edit(scene, [f"move {name}=+4,0"], seeds=[0], learn=False)
    seconds["edit"] = time.perf_counter() - began
    began = time.perf_counter()
    relearned = editor.obtain(scene, force=True)
    seconds["learn_normal"] = time.perf_counter() - began
    fresh = Editor(model=model, backend=backend, cache_dir=cache_dir, settings=settings)
    on_disk = fresh.cached_concept(fresh.scene(folder)) is not None
    with ConceptCache(cache_dir) as cache:
        entries = [e for e in cache.entries() if e.kind == "concept"]
    image = outcome.best().image
    checks = {
        "learned_in_low_memory": bool(learned.concept.meta["learn_config"]["low_memory"]),
        "edit_used_the_learned_concept": outcome.concept_id == learned.key,
        "relearned_under_the_same_key": relearned.key == learned.key and not relearned.cached,
        "one_cache_entry": len(entries) == 1,
        "found_on_disk": on_disk,
        "image_not_blank": bool(np.asarray(image).std() > 0),
    }
    return {
        "model": model,
        "backend": backend,
        "low_memory_settings": learn_overrides(backend),
        "checks": checks,
        "seconds": seconds,
        "ok": all(checks.values()),
    }


def forced_oom(
    model: str,
    backend: str,
    device: str,
    cache_dir: Path,
    work: Path,
    fraction: float,
    limit: float,
) -> dict[str, Any]:
    """`layoutedit edit` with too little memory: one `error:` line naming out of memory, exit
    2, no traceback.

    Args:
        model, backend: as for the CLI.
        device: `cuda` (the allocator limited to `fraction` of the GPU) or `cpu` (simulated).
        cache_dir: concept cache (the edit needs no concept: plain words).
        work: where the scene and outputs go.
        fraction: share of the GPU's memory the subprocess may allocate.
        limit: seconds before the subprocess is stopped.
    """
    folder, name = scene_folder(work / "oom-scene")
    mode = ["cuda", str(fraction)] if device == "cuda" else ["cpu"]
    command = [
        sys.executable,
        "-c",
        _PRELUDE,
        *mode,
        "--model",
        model,
        "--backend",
        backend,
        "--cache-dir",
        str(cache_dir),
        "edit",
        str(folder),
        "--no-concept",
        "--move",
        f"{name}=+4,0",
        "--seeds",
        "0",
        "--steps",
        "2",
        "--out",
        str(work / "oom-out"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=limit, check=False)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    ok = (
        done.returncode == 2
        and len(errors) == 1
        and "out of memory" in errors[0]
        and "Traceback" not in done.stderr
    )
    return {
        "exit_code": done.returncode,
        "error_lines": errors,
        "stderr_tail": done.stderr[-600:],
        "simulated": device != "cuda",
        "fraction": fraction if device == "cuda" else None,
        "ok": ok,
    }
