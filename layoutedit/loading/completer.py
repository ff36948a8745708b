"""The completer network (`editing.complete`): its architecture, and saving and loading it.

A model folder may ship it as `completer/`: `completer.safetensors` and `COMPLETER.json`
(the widths, the steps and samples it learned from). Outside the model's fingerprint, as
the corrector: concepts and inversions never run it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from layoutedit.loading.small_unet import SmallUNet, load_net, save_net

COMPLETER_FOLDER = "completer"
COMPLETER_WEIGHTS = "completer.safetensors"
COMPLETER_INFO = "COMPLETER.json"

COMPLETER_WIDTHS = (16, 32, 64, 128)
"""Channels at each scale, full resolution first (an 8 px cell at the coarsest: an object
of the 64 px world spans a few)."""

COMPLETER_IN = 4
"""Input planes (`editing.complete.COMPLETER_CHANNELS`)."""

COMPLETER_SIDE = 64
"""px, the side of the label grids a completer learned on (`COMPLETER.json`'s `side`): the
world's scenes. A grid of another side takes the shape rules (`editing.start`)."""


class Completer(SmallUNet):
    """U-shaped net: (B, 4, H, W) 0/1 planes (the object's visible pixels, the pixels of the
    objects over it, the other objects', the frame) -> (B, 1, H, W) logits that a pixel
    belongs to the object's whole shape. H and W divisible by 2^(len(widths) - 1)."""

    def __init__(
        self, widths: Sequence[int] = COMPLETER_WIDTHS, side: int = COMPLETER_SIDE
    ) -> None:
        super().__init__(COMPLETER_IN, 1, widths)
        self.side = int(side)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return self.run(planes)


def save_completer(net: Completer, folder: Path, info: dict[str, object]) -> None:
    """`folder/completer.safetensors` and `folder/COMPLETER.json` (the widths and `info`)."""
    save_net(net, folder, COMPLETER_WEIGHTS, COMPLETER_INFO, {"side": net.side, **info})


def load_completer(folder: Path) -> Completer:
    """The completer saved in `folder` (safetensors only), in eval mode on the CPU.

    Raises:
        ValueError: the folder lacks a file, or its weights do not fit its widths.
    """
    net = load_net(folder, COMPLETER_WEIGHTS, COMPLETER_INFO, Completer, "a completer")
    info = json.loads((folder / COMPLETER_INFO).read_text())
    try:
        net.side = int(info.get("side", COMPLETER_SIDE))
    except (TypeError, ValueError):
        raise ValueError(f"{folder}: not a completer (side {info.get('side')!r})") from None
    return net
