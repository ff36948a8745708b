"""Splitting a run's layouts or frames over processes (`accelerate launch -m layoutedit run`).

A launcher (`accelerate launch`, `torchrun`) starts N copies of the command with `RANK` and
`WORLD_SIZE` in their environment. Each process takes the items whose index `i` has
`i % N == rank`, loads the model once and edits its share; the scene's concept and inversion
come from the shared cache, whose per-key lock makes one process compute each while the
others wait and then load it. At the end `Shard.gather` hands every process's records to
rank 0 (torch.distributed on the CPU `gloo` backend), which writes what depends on all of
them (summary.json, the sheet, the GIF). Every item's files are the same as a one-process
run's: an item's result depends only on its layout, its seed, the concept and the inversion.

On a machine with several GPUs each process takes the one its `LOCAL_RANK` names
(`torch.cuda.set_device`, in `claim_shard`): without it every copy would load its model on
GPU 0. The CUDA backend reads the same variable (`cuda_device_index`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shard:
    """This process's place among the run's processes."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None
    """`LOCAL_RANK` of the launcher: the process's index on this machine (its GPU)."""

    @property
    def is_main(self) -> bool:
        """True for rank 0, the process that writes the run's shared files."""
        return self.rank == 0

    def mine(self, count: int) -> list[int]:
        """Indices (of `count` items) this process handles: every `world`-th from `rank`."""
        return list(range(self.rank, count, self.world))

    def gather(self, payload: Any) -> list[Any] | None:
        """Every process's `payload`, in rank order, on rank 0 (None elsewhere).

        One process: `[payload]` without any communication.
        """
        if self.world == 1:
            return [payload]
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", rank=self.rank, world_size=self.world)
        received: list[Any] = [None] * self.world
        dist.all_gather_object(received, payload)
        dist.barrier()
        dist.destroy_process_group()
        return received if self.is_main else None


_LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def claim_shard() -> Shard:
    """`current_shard()`, then the launcher's rank variables taken out of `os.environ`.

    Called by `run`, `edit` and `learn` before any work. On CUDA the process's GPU is chosen
    first (`use_local_device`), since `LOCAL_RANK` is gone after.

    Why: a library that sees `WORLD_SIZE` > 1 may join a process group (an
    `accelerate.Accelerator` does; learning builds none since its precision moved to
    `layoutedit.precision`), and joining blocks until every process joins. One process
    learns while the others wait on the cache's lock for its result, so they would never
    join: a deadlock. Each process learns and edits as a single process; only `gather`
    (given rank and world size explicitly, `MASTER_ADDR`/`MASTER_PORT` still set) talks to
    the others.
    """
    shard = current_shard()
    use_local_device(shard.local_rank)
    for name in _LAUNCHER_VARIABLES:
        os.environ.pop(name, None)
    return shard


def current_shard() -> Shard:
    """The shard of this process from `RANK` / `WORLD_SIZE` / `LOCAL_RANK` (one process
    when unset).

    Raises:
        ValueError: values that are not a rank within the world size.
    """
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return Shard(rank, world, local_rank(os.environ))


def local_rank(environ: Mapping[str, str]) -> int | None:
    """`LOCAL_RANK` as set by `torchrun` / `accelerate launch`, or None when unset.

    Raises:
        ValueError: a value that is not a non-negative integer.
    """
    text = environ.get("LOCAL_RANK", "").strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"LOCAL_RANK={text!r} is not a process index")
    return int(text)


def cuda_device_index(environ: Mapping[str, str] | None = None) -> int:
    """The CUDA device this process runs on: the one `LOCAL_RANK` names when the launcher
    set it, else the current device (which `claim_shard` set from it).

    Raises:
        ValueError: `LOCAL_RANK` names a device this machine does not have.
    """
    import torch

    env = os.environ if environ is None else environ
    index = local_rank(env)
    if index is None:
        return int(torch.cuda.current_device())
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(
            f"LOCAL_RANK={index} but this machine has {count} CUDA device(s); launch at most "
            f"{count} processes per machine (accelerate launch --num_processes {count})"
        )
    return index


def use_local_device(index: int | None) -> None:
    """Make `LOCAL_RANK`'s GPU the current CUDA device (`torch.cuda.set_device`), so that
    every model and tensor of this process lands on it. Nothing without a
    local rank or without CUDA (torch is not even imported without a local rank)."""
    if index is None:
        return
    import torch

    if not torch.cuda.is_available():
        return
    torch.cuda.set_device(cuda_device_index({"LOCAL_RANK": str(index)}))
