"""The `low_memory` setting of editing (`EditConfig.low_memory`), also applied by the
planner (`layoutedit plan --low-memory`) to its `meta` model: VAE slicing, decoding a batch
one image at a time.

Not gradient checkpointing: the recording processors compute attention explicitly only while
their store records, so a recomputation in the backward pass (after recording stopped) would
run the other kernel and torch.utils.checkpoint refuses the mismatch. The guidance pass is
small anyway (it stops after the last recorded layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layoutedit.config import EditConfig
    from layoutedit.loading.model_loading import LoadedModel


def prepare_editing(model: LoadedModel, cfg: EditConfig) -> None:
    """Make a model ready to edit: gradient checkpointing off (a low-memory learn on the same
    model leaves it on, and the guidance pass cannot use it, see above); with
    `cfg.low_memory`, VAE slicing."""
    if getattr(model.unet, "is_gradient_checkpointing", False):
        model.unet.disable_gradient_checkpointing()
    if cfg.low_memory:
        model.vae.enable_slicing()
