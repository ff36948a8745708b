"""Running `python -m layoutedit ...` as a subprocess, alone or under `accelerate launch`
with N CPU processes (the multi-process tests of `run`, `edit` and `learn`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port nobody listens on now (the launcher's rendezvous port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    base = ["-m", "layoutedit", "--model", str(model), "--backend", "cpu"]
    base += ["--cache-dir", str(cache)]
    if processes == 1:
        command = [sys.executable, *base, *args]
    else:
        accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
        if accelerate is None:
            pytest.skip("accelerate's launcher is not installed")
        command = [
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
