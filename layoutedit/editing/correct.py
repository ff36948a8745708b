"""The corrector: a small pixel-space network that fixes what the finished edit gets wrong.

Without a model step (the `no-model` row) the edit is right in most places and wrong in
known, systematic ways: a new shadow a little too bright, a re-lit colour a little off, an
uncovered part painted to a guessed outline. The diffusion model's redraw cannot see those
errors (it sees only the noised start), and a refiner in latent space pays the VAE's own
error on every pixel it touches. The corrector works on the finished image's pixels: a
U-shaped convolutional network that reads the image and the zone where it differs from the
source (`refine.changed_zone`) and returns a change to add inside that zone. It is trained
(`shapes/corrector_train.py`) on pairs of the `no-model` row's finished images and the
re-rendered truths (`shapes/refiner_pairs.py --stage final`), with the squared error the
benchmark's PSNR scores, and runs as the edit's last post-pass (`edit.correct`).

A model folder may ship it as `corrector/` (`loading.corrector`). It runs only when the
edit is denoised, so the `no-model` row (every model step skipped) is the image without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from layoutedit.loading.corrector import Corrector, to_unit

if TYPE_CHECKING:
    from layoutedit.editing.start import PasteStart


def guide_masks(zone: np.ndarray, start: PasteStart) -> np.ndarray:
    """(4, H, W) bool `GUIDE_MASKS`: where the image may change (`zone`, (H, W) bool), where
    objects were pasted (their pixels are the source's, re-lit), where a hidden part may
    show and where a shadow was lifted or cast (both guesses of the start)."""
    empty = np.zeros_like(zone)
    hidden = empty if start.hidden is None else start.hidden
    shadows = empty if start.shadows is None else start.shadows
    return np.stack([zone, start.footprints.any(axis=0), hidden, shadows]).astype(bool)


MIRRORS: tuple[tuple[bool, tuple[int, ...]], ...] = tuple(
    (transpose, dims) for transpose in (False, True) for dims in ((), (-1,), (-2,), (-2, -1))
)
"""The eight mirror images of a square (transposed or not, then flipped left-right, up-down
or both; `(transpose, tensor dims to flip)`): the corrector's change is the mean of its
changes to each, mirrored back. World v2 has no preferred side (each scene draws its
light's direction), so each is an equally good reading; where they disagree, the change
is a guess and shrinks. On `full`'s edits before the corrector (saved once; 8 scenes x 2
each), four flips against one reading: dev seeds 2000 / 2001 image +0.12 [+0.03, +0.22] /
+0.19 [+0.05, +0.34] dB, uncovered parts +0.33 [+0.19, +0.48] / +0.16 [-0.04, +0.37] dB;
seeds 0 / 1000 image +0.03 / +0.08 dB; the transposes on top, image +0.035 [+0.005,
+0.064] / +0.011 / +0.032 [+0.001, +0.064] / +0.040 [+0.002, +0.082] dB at seeds 2000 /
2001 / 0 / 1000 (docs/tuning.md, world v2 round 10)."""


def _mirrored(t: torch.Tensor, transpose: bool, dims: tuple[int, ...]) -> torch.Tensor:
    """(N, C, H, W) `t` transposed (H and W swapped) if asked, then flipped along `dims`."""
    t = t.transpose(-1, -2) if transpose else t
    return t.flip(dims) if dims else t


def _unmirrored(t: torch.Tensor, transpose: bool, dims: tuple[int, ...]) -> torch.Tensor:
    """The inverse of `_mirrored`: flipped back, then transposed back."""
    t = t.flip(dims) if dims else t
    return t.transpose(-1, -2) if transpose else t


BACKGROUND_REACH = 4
"""Half the side of the square (px) whose object-free pixels give the background colour
around a painted part's pixel (`shade_or_blend`)."""


def shade_or_blend(
    change: torch.Tensor, image: torch.Tensor, painted: torch.Tensor, objects: torch.Tensor
) -> torch.Tensor:
    """`change` kept, on `painted` pixels, to shading the pixel's own colour and blending it
    toward the background around it: its part in the plane of those two directions.

    Why: a pixel of a hidden part the start painted is, in the truth, the object's colour
    under some light or a mix of it with the background (its outline); the corrector's
    change there also shifts its hue toward what its pairs held most often (a yellow
    heart's uncovered lobe turned green). On `full`'s images at seeds 2000 / 2001 / 0 /
    1000 with the shipped corrector (docs/tuning.md, world v2 round 12): uncovered parts
    +0.10 / +0.02 / +0.04 / +0.07 dB, image -0.01 / +0.01 / +0.03 / +0.02 dB.

    Args:
        change: (3, H, W) the corrector's change, in the [-1, 1] units of `image`.
        image: (3, H, W) the finished image in [-1, 1].
        painted: (H, W) bool the painted hidden parts (`PasteStart.painted`).
        objects: (H, W) bool every object's pixels (pasted or painted): not background.

    Returns:
        (3, H, W) the change, unchanged off `painted`.
    """
    free = (~objects).to(image.dtype)[None]
    side = 2 * BACKGROUND_REACH + 1

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t[None], side, stride=1, padding=BACKGROUND_REACH)[0]

    background = local_mean(image * free) / local_mean(free).clamp(min=1e-3)
    toward = background - image
    toward = toward / (toward.norm(dim=0, keepdim=True) + 1e-6)
    shade = (image + 1.0) / 2.0
    shade = shade - (shade * toward).sum(0, keepdim=True) * toward  # Gram-Schmidt
    shade = shade / (shade.norm(dim=0, keepdim=True) + 1e-6)
    kept = (change * toward).sum(0, keepdim=True) * toward
    kept = kept + (change * shade).sum(0, keepdim=True) * shade
    return torch.where(painted[None], kept, change)


@torch.no_grad()
def correct_image(
    net: Corrector,
    image: np.ndarray,
    masks: np.ndarray,
    mirrors: bool = True,
    painted: np.ndarray | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 `image` (uint8, same shape) with the corrector's change added inside
    the zone, the first of `masks` ((4, H, W) bool `guide_masks`). The image is padded to a
    multiple of the net's coarsest scale by edge copies. With `mirrors` the change is the
    mean over `MIRRORS` (eight runs of the net; without, one). With `painted` ((H, W) bool,
    the start's painted hidden parts) the change there only shades or blends toward the
    background (`shade_or_blend`; the objects are the pasted ones, `masks[1]`, and these)."""
    h, w = masks.shape[1:]
    unit = 2 ** (len(net.widths) - 1)
    ph, pw = -h % unit, -w % unit
    x = to_unit(image[None])
    m = torch.from_numpy(masks.astype(np.float32))[None]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        m = F.pad(m, (0, pw, 0, ph))
    param = next(net.parameters())
    x_in, m_in = x.to(param), m.to(param)
    changes = [
        _unmirrored(net(_mirrored(x_in, t, d), _mirrored(m_in, t, d)), t, d)
        for t, d in (MIRRORS if mirrors else MIRRORS[:1])
    ]
    change = torch.stack(changes).mean(dim=0).float().cpu()[0, :, :h, :w]
    if painted is not None and painted.any():
        part = torch.from_numpy(painted.astype(bool))
        objects = torch.from_numpy(masks[1].astype(bool)) | part
        change = shade_or_blend(change, x[0, :, :h, :w].float(), part, objects)
    out = (x[0, :, :h, :w] + change + 1.0) * 127.5
    return np.clip(np.round(out.permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)
