"""Binary-mask clean-up in plain numpy: no SciPy needed.

Masks are (H, W) bool arrays. Connectivity is 4-neighbour for components and holes, so a
diagonal touch does not join two regions.
"""

from __future__ import annotations

import numpy as np


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Grow `mask` by `radius` pixels (square structuring element)."""
    out = mask.copy()
    for _ in range(radius):
        padded = np.pad(out, 1)
        grown = padded[1:-1, 1:-1].copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                grown |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
        out = grown
    return out


def erode(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Shrink `mask` by `radius` pixels; pixels outside the frame count as off."""
    return ~dilate(~mask, radius) if radius else mask.copy()


def close(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Dilate then erode: bridges gaps up to about 2 x `radius` pixels wide.

    The erosion treats the frame's outside as on, so a region at the edge does not shrink.
    """
    if radius == 0:
        return mask.copy()
    grown = np.pad(dilate(mask, radius), radius, mode="edge")
    return erode(grown, radius)[radius:-radius, radius:-radius]


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) column ranges where the bool `row` is on."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], row.view(np.int8), [0]))))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def label_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components (4-neighbour) of `mask`, by union-find over row runs.

    Returns:
        labels: (H, W) int32, 0 off the mask, 1..N for the components (in scan order).
        sizes: (N,) int64 pixel count of component i + 1.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    parent: list[int] = []
    rows: list[list[tuple[int, int, int]]] = []  # per row: (start, end, run id)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[tuple[int, int, int]] = []
    for y in range(mask.shape[0]):
        current = []
        j = 0
        for start, end in _runs(mask[y]):
            run = len(parent)
            parent.append(run)
            # Runs of the row above that share a column with [start, end) join this one.
            while j < len(previous) and previous[j][1] <= start:
                j += 1
            k = j
            while k < len(previous) and previous[k][0] < end:
                a, b = find(previous[k][2]), find(run)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                k += 1
            current.append((start, end, run))
        rows.append(current)
        previous = current
    roots = [find(i) for i in range(len(parent))]
    numbers = {root: n + 1 for n, root in enumerate(dict.fromkeys(roots))}
    labels = np.zeros(mask.shape, dtype=np.int32)
    for y, runs in enumerate(rows):
        for start, end, run in runs:
            labels[y, start:end] = numbers[roots[run]]
    sizes = np.bincount(labels.reshape(-1), minlength=len(numbers) + 1)[1:].astype(np.int64)
    return labels, sizes


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` plus every off region that does not reach the frame's edge."""
    outside, _ = label_components(~mask)
    edge = np.concatenate((outside[0], outside[-1], outside[:, 0], outside[:, -1]))
    reaches_edge = np.isin(outside, np.unique(edge[edge > 0]))
    return mask | ~reaches_edge


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of `mask` (all False when `mask` is empty)."""
    labels, sizes = label_components(mask)
    if sizes.size == 0:
        return np.zeros_like(mask)
    return labels == int(np.argmax(sizes)) + 1
