"""Whole (amodal) source shapes from the model's completer: what the objects in front of an
object hide of it.

The start paints each uncovered part from the object's estimated whole shape. The shape
rules of `scenes.occlusion_fit` (convex hull, a fitted ellipse) get an outline right where
it is convex and smooth; a heart's lobe, a star's arm or a square's corner under another
object come back cut along a chord. A model folder may ship a completer
(`loading.completer`): a small net that read, on the scenes of the world the model learned,
an object's visible pixels and the pixels of the objects over it and learned what lies
under them. Numpy in, numpy out; the net runs where the model is (a 64 px grid: milliseconds
on a CPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layoutedit.scenes.morphology import bordering
from layoutedit.scenes.occlusion_fit import covering

COMPLETER_CHANNELS = ("visible", "covered", "others", "frame")
"""The planes the completer reads, in order (`completer_inputs`)."""

WHOLE_THRESHOLD = 0.5
"""Probability above which a covered pixel is taken as part of the whole shape."""


def completer_inputs(labels: np.ndarray, k: int, n_objects: int, over: np.ndarray) -> np.ndarray:
    """(4, H, W) float32 0/1 planes `COMPLETER_CHANNELS` for object `k`: its visible pixels,
    the pixels of the objects over it (by `over`, (K, K) bool, [i, j] when j lies over i),
    the other objects' pixels, and ones inside the frame (the net's zero padding then marks
    the frame's edge).

    Args:
        labels: (H, W) int label grid, object i -> i, background K.
        k: the object.
        n_objects: K.
        over: (K, K) bool depth order read from the source.
    """
    visible = labels == k
    covered = covering(labels, k, n_objects, over)
    others = (labels < n_objects) & ~visible & ~covered
    frame = np.ones_like(visible)
    return np.stack([visible, covered, others, frame]).astype(np.float32)


def needs_completion(planes: np.ndarray) -> bool:
    """Whether an object over it touches the object of `planes` ((4, H, W),
    `completer_inputs`): otherwise nothing of it is hidden and its whole shape is its
    visible pixels."""
    return bool(bordering(planes[0] > 0, planes[1] > 0).any())


@torch.no_grad()
def complete_wholes(
    completer: Any, labels: np.ndarray, n_objects: int, over: np.ndarray
) -> np.ndarray:
    """(K, H, W) bool each object's whole source shape: its visible pixels plus the covered
    pixels the completer gives a probability over `WHOLE_THRESHOLD`.

    Args:
        completer: `loading.completer.Completer` (eval mode, on any device and dtype).
        labels: (H, W) int label grid, object i -> i, background K; H and W divisible by
            the completer's `multiple`.
        n_objects: K.
        over: (K, K) bool, [i, j] when object j lies over object i.
    """
    wholes = np.stack([labels == k for k in range(n_objects)]).astype(bool)
    every = [completer_inputs(labels, k, n_objects, over) for k in range(n_objects)]
    todo = [k for k in range(n_objects) if needs_completion(every[k])]
    if not todo:
        return wholes
    planes = np.stack([every[k] for k in todo])
    # On the model's device and in its precision (a CUDA edit may hold it in half).
    param = next(completer.parameters())
    logits = completer(torch.from_numpy(planes).to(param)).float().cpu()
    probs = torch.sigmoid(logits)[:, 0].numpy()
    for row, k in enumerate(todo):
        covered = planes[row, 1] > 0
        wholes[k] |= covered & (probs[row] > WHOLE_THRESHOLD)
    return wholes
