"""Set-up shared by the CLI tests that learn and edit on the tiny model: the fast settings,
the CLI called in-process (`run_cli`) or as 1 or N processes (`launch`), a scene's names."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layoutedit.cli.app import app

# Learning and editing in a few steps: enough to run every stage on the tiny model.
FAST_SETTINGS = """
[learn]
ti_steps = 2
ti_batch_size = 1
ft_steps = 2
ft_batch_size = 1
checkpoint_every = 0

[edit]
steps = 3
max_iter_to_alter = 2
refinement = { 0 = 0.9 }
max_refinement_steps = 1
blend_steps = 2
"""


def write_fast_config(folder: Path, extra_edit: str = "") -> Path:
    """`folder/fast.toml`: `FAST_SETTINGS` with `extra_edit` lines added to its [edit] table."""
    path = folder / "fast.toml"
    path.write_text(FAST_SETTINGS + extra_edit)
    return path


def object_names(scene_dir: Path) -> list[str]:
    """The object names of a scene folder, in label-map order (background left out)."""
    labels = json.loads((scene_dir / "semantic_dict.json").read_text())
    return [name for name in labels if name != "background"]


def run_cli(model: Path | str, cache: Path, *args: str) -> tuple[int, str, str]:
    """`layoutedit --model MODEL --backend cpu --cache-dir CACHE ARGS` in-process:
    (exit code, stdout, stderr)."""
    result = CliRunner().invoke(
        app, ["--model", str(model), "--backend", "cpu", "--cache-dir", str(cache), *args]
    )
    return result.exit_code, result.stdout, result.stderr


def free_port() -> int:
    """A TCP port nobody listens on now (the launcher's rendezvous port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(model: Path, cache: Path, *args: str, processes: int) -> list[str]:
    """The command line of `launch`: `python -m layoutedit ...` for one process, else under
    `accelerate launch --multi_gpu` (skips the test when the launcher is not installed)."""
    base = ["-m", "layoutedit", "--model", str(model), "--backend", "cpu"]
    base += ["--cache-dir", str(cache)]
    if processes == 1:
        return [sys.executable, *base, *args]
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed")
    return [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        "1",
        "--main_process_port",
        str(free_port()),
        *base,
        *args,
    ]


def launch(
    model: Path, cache: Path, *args: str, processes: int, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """`layoutedit --model MODEL --backend cpu --cache-dir CACHE ARGS` in `processes` processes.

    One process runs `python -m layoutedit`; more run it under `accelerate launch
    --multi_gpu` (CPU processes on a machine without GPUs). Skips the test when accelerate's
    launcher is not installed. The caller checks the exit code. Past `timeout` seconds every
    process of the launch is killed (not just the launcher, whose workers would live on) and
    `subprocess.TimeoutExpired` is raised.
    """
    command = launch_command(model, cache, *args, processes=processes)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # A session of its own, so a timeout can kill the launcher's workers with it.
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
