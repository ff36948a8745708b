"""The corrector network (`editing.correct`): its architecture, and saving and loading it.

A model folder may ship it as `corrector/`: `corrector.safetensors` and `CORRECTOR.json`
(the widths, the steps and pairs it learned from). It lives with the loader because the
loader builds it; what it does in an edit is `editing.correct`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from layoutedit.loading import small_unet
from layoutedit.loading.small_unet import SmallUNet, load_net, save_net

CORRECTOR_FOLDER = "corrector"
"""Subfolder of a model folder holding its corrector, if any. Not part of the model's
fingerprint: concepts and inversions never run it."""

CORRECTOR_WIDTHS = (16, 32, 64, 128, 128)
"""Channels at each scale, full resolution first; each further scale halves the side."""

GUIDE_MASKS = ("zone", "objects", "hidden", "shadows")
"""The masks the corrector reads beside the image, in order (`editing.correct.guide_masks`)."""

CORRECTOR_WEIGHTS = "corrector.safetensors"
CORRECTOR_INFO = "CORRECTOR.json"


class Corrector(SmallUNet):
    """U-shaped net: (B, 3, H, W) image in [-1, 1] and (B, 4, H, W) `GUIDE_MASKS` 0/1 ->
    (B, 3, H, W) change in [-1, 1] units, zero outside the zone (the first mask). H and W
    divisible by 2^(len(widths) - 1)."""

    def __init__(self, widths: Sequence[int] = CORRECTOR_WIDTHS) -> None:
        super().__init__(3 + len(GUIDE_MASKS), 3, widths)
        # Zero at the start of training: the corrector begins as "the image is right".
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:
            nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.run(torch.cat([image, masks], dim=1)) * masks[:, :1]


def to_unit(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def save_corrector(net: Corrector, folder: Path, info: dict[str, object]) -> None:
    """`folder/corrector.safetensors` and `folder/CORRECTOR.json` (the widths and `info`)."""
    save_net(net, folder, CORRECTOR_WEIGHTS, CORRECTOR_INFO, info)


def load_weights(net: Corrector, path: Path) -> Corrector:
    """`net` with the weights of the safetensors file `path`.

    Raises:
        ValueError: the file is missing, not safetensors, or does not fit `net`'s widths.
    """
    return small_unet.load_weights(net, path, "corrector")


def load_corrector(folder: Path) -> Corrector:
    """The corrector saved in `folder` (safetensors only), in eval mode on the CPU.

    Raises:
        ValueError: the folder lacks a file, or its weights do not fit its widths.
    """
    return load_net(folder, CORRECTOR_WEIGHTS, CORRECTOR_INFO, Corrector, "a corrector")
