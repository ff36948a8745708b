"""Running out of memory as one line that says what to do, not a traceback.

A GPU (or the CPU's allocator) that cannot hold a step is something the user can act on: a
lower-memory mode, fewer seeds, a smaller image or model. `torch.OutOfMemoryError` (and the
`RuntimeError`s older builds and other allocators raise) become `OutOfMemory`, a `UserError`
the CLI prints as one line with exit code 2 (`cli.common.user_errors`), naming the phase it
happened in (`phase`, wrapped around each phase by the `Editor` and the edit session) and
the way out for that phase.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from layoutedit.errors import UserError

ADVICE = {
    "learn": "learn with --low-memory (gradient checkpointing, frozen weights in half "
    "precision), a smaller ti_batch_size / ft_batch_size, or a smaller model",
    "inversion": "edit with --low-memory, or a smaller model",
    "edit": "edit with --low-memory, fewer seeds (--seeds 0), or a smaller model",
    "decode": "edit with --low-memory (decodes in tiles), or a smaller model",
}
"""Phase -> what to try; any other phase gets the general advice."""
GENERAL = "try --low-memory, fewer seeds, a smaller image or model"

_PATTERNS = (
    "out of memory",  # CUDA: "CUDA out of memory", "CUDA error: out of memory"; MPS
    "can't allocate memory",  # the CPU allocator
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
)


class OutOfMemory(UserError):
    """A phase needed more memory than the device has; the message says what to try."""

    def __init__(self, phase: str, detail: str = "") -> None:
        self.phase = phase
        where = f" ({detail})" if detail else ""
        advice = ADVICE.get(phase, GENERAL)
        super().__init__(f"out of memory during {phase}{where}: {advice}")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for `torch.OutOfMemoryError` and the `RuntimeError`s that mean the same."""
    torch = sys.modules.get("torch")  # never imports torch for a CLI that did not
    kind = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    if kind is not None and isinstance(exc, kind):
        return True
    if not isinstance(exc, (RuntimeError, MemoryError)):
        return False
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or any(p in text for p in _PATTERNS)


def memory_detail(exc: BaseException) -> str:
    """The useful part of an allocator's message, e.g. `tried to allocate 2.00 GiB`."""
    found = re.search(r"tried to allocate ([\d.]+ ?[KMGT]i?B)", str(exc), re.IGNORECASE)
    return f"tried to allocate {found.group(1)}" if found else ""


def release_cached_memory() -> None:
    """Hand the CUDA allocator's cached blocks back, so the process can carry on (serve)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Inside the block, running out of memory raises `OutOfMemory(name)` (an error raised
    already, by an inner phase, passes unchanged)."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        release_cached_memory()
        raise OutOfMemory(name, memory_detail(exc)) from None
