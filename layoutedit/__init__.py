"""layoutedit: rearrange the objects of one existing photo with a diffusion model.

The Python API is `Editor` (`layoutedit.editor`); the layout operations are in
`layoutedit.scenes.layout_edits`. They are imported on first use, so `import layoutedit` (and the
CLI's model-free commands) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from layoutedit.version import __version__

if TYPE_CHECKING:
    from layoutedit.editor import Cancelled, ConceptMissing, Editor, EditOutcome
    from layoutedit.scenes.layout_edits import Box, Move, Operation, Scale, Swap, ToFront

_LAZY = {
    "Editor": "layoutedit.editor",
    "EditOutcome": "layoutedit.editor",
    "Cancelled": "layoutedit.editor",
    "ConceptMissing": "layoutedit.editor",
    "Move": "layoutedit.scenes.layout_edits",
    "Scale": "layoutedit.scenes.layout_edits",
    "Swap": "layoutedit.scenes.layout_edits",
    "Box": "layoutedit.scenes.layout_edits",
    "ToFront": "layoutedit.scenes.layout_edits",
    "Operation": "layoutedit.scenes.layout_edits",
}

__all__ = [
    "Box",
    "Cancelled",
    "ConceptMissing",
    "EditOutcome",
    "Editor",
    "Move",
    "Operation",
    "Scale",
    "Swap",
    "ToFront",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Import the public names lazily (the editor pulls in torch and diffusers)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'layoutedit' has no attribute {name!r}")
