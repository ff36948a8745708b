"""Small binary morphology on (H, W) bool masks, pure numpy (no scipy dependency).

The one copy for the package: the colour segmenter and the editor's ranking (64 x 64
shapes-world scenes), the paste start, the bench, and `layoutedit mask` on photo-sized
images. Dilation is plain shifts; components are found by union-find over row runs, so a
megapixel mask costs one pass over its runs, not a Python step per pixel. Connectivity is
4-neighbour throughout: a diagonal touch does not join two regions.
"""

from __future__ import annotations

import numpy as np


def disk(radius: float) -> np.ndarray:
    """(2r+1, 2r+1) bool structuring element: offsets within `radius` pixels of the centre."""
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= radius * radius + 1e-9


def dilate(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary dilation of (H, W) bool `mask` by a centred odd-sized bool `footprint`.

    Pixels outside the frame count as False, so nothing grows in from the border.
    """
    h, w = mask.shape
    ry, rx = footprint.shape[0] // 2, footprint.shape[1] // 2
    padded = np.pad(mask, ((ry, ry), (rx, rx)))
    out = np.zeros_like(mask, dtype=bool)
    for dy, dx in zip(*np.nonzero(footprint), strict=True):
        out |= padded[dy : dy + h, dx : dx + w]
    return out


def erode(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Binary erosion; pixels outside the frame count as True (the frame edge does not erode)."""
    return ~dilate(~mask, footprint[::-1, ::-1])


def bordering(mask: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(H, W) bool pixels of `mask` with a 4-neighbour in `other` (same shape; nothing
    borders from outside the frame)."""
    near = np.zeros_like(mask)
    near[1:] |= other[:-1]
    near[:-1] |= other[1:]
    near[:, 1:] |= other[:, :-1]
    near[:, :-1] |= other[:, 1:]
    return np.asarray(mask & near, dtype=bool)


def box(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) all-True structuring element: `radius` pixels in every direction,
    diagonals included (a dilation by `box(r)` is r dilations by the 3 x 3 square)."""
    return np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)


def close(mask: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Dilate then erode: bridges gaps narrower than the footprint.

    The frame is extended by its edge pixels for the erosion, so a region that touches the
    edge keeps its extent there.
    """
    ry, rx = footprint.shape[0] // 2, footprint.shape[1] // 2
    if ry == rx == 0:
        return mask.copy()
    grown = np.pad(dilate(mask, footprint), ((ry, ry), (rx, rx)), mode="edge")
    h, w = mask.shape
    return erode(grown, footprint)[ry : ry + h, rx : rx + w]


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) column ranges where the bool `row` is on."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], row.view(np.int8), [0]))))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of an (H, W) bool mask, by union-find over row runs.

    Returns:
        (H, W) int32 labels (0 = not in the mask, 1..n = component, numbered in the order of
        each component's first pixel in row-major order) and n.
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
    # The smaller run id stays the root, so roots in run order are the components in order
    # of their first pixel.
    roots = [find(i) for i in range(len(parent))]
    numbers = {root: n + 1 for n, root in enumerate(dict.fromkeys(roots))}
    labels = np.zeros(mask.shape, dtype=np.int32)
    for y, runs in enumerate(rows):
        for start, end, run in runs:
            labels[y, start:end] = numbers[roots[run]]
    return labels, len(numbers)


def remove_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop 4-connected components of fewer than `min_pixels` pixels."""
    labels, n = components(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, max_pixels: int) -> np.ndarray:
    """Fill holes (components of ~mask that do not touch the frame) of at most `max_pixels`.

    A ring's real hole is far larger than the few pixels this is meant for (noise specks).
    """
    labels, n = components(~mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = sizes <= max_pixels
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` plus every hole: each off region that does not reach the frame's edge."""
    return fill_small_holes(mask, mask.size)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of `mask` (empty mask -> empty mask)."""
    labels, n = components(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return labels == int(np.argmax(sizes))
