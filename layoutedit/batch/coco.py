"""COCO annotations of a batch's images: a box and an RLE mask for every object.

Pure numpy, no pycocotools at run time. Masks are stored as COCO's compressed RLE (the
`counts` string that `pycocotools.mask.encode` writes: run lengths over the mask read
column by column, starting with a run of zeros, each run as the difference to the run two
before, in 5-bit groups offset by 48), so any COCO reader decodes them. Boxes are
`[x, y, width, height]` in pixels of the mask's extent, as `pycocotools.mask.toBbox` gives.

    objects = object_annotations(labels, names)   # per image, in label-map order
    document = coco_document(images)              # the dataset's coco.json
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of an (H, W) bool mask read in column-major order, first run of zeros
    (possibly 0 long)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat[0] else runs


def rle_string(counts: Sequence[int]) -> str:
    """COCO's compressed form of run lengths (`rleToString` of its mask API)."""
    out: list[str] = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            # Python's >> is arithmetic, as the C code's on a signed long.
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """(H, W) bool mask of a compressed RLE `{"size": [H, W], "counts": str}` (the inverse
    of `mask_rle`; for checks without pycocotools)."""
    height, width = rle["size"]
    text: str = rle["counts"]
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    values = np.zeros(height * width, dtype=bool)
    pos, fill = 0, False
    for run in counts:
        values[pos : pos + run] = fill
        pos += run
        fill = not fill
    return values.reshape((width, height)).T


def mask_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of an (H, W) bool mask: `{"size": [H, W], "counts": str}`."""
    height, width = mask.shape
    return {"size": [int(height), int(width)], "counts": rle_string(rle_counts(mask))}


def mask_box(mask: np.ndarray) -> list[float]:
    """`[x, y, width, height]` of the mask's pixel extent (zeros for an empty mask)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def object_annotations(labels: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """One record per object present in an (H, W) label grid (label i is `names[i]`):
    `name`, `bbox`, `area` (pixels) and `segmentation` (compressed RLE). An object with no
    pixel (hidden) has no record."""
    out = []
    for index, name in enumerate(names):
        mask = labels == index
        area = int(mask.sum())
        if area == 0:
            continue
        out.append(
            {"name": name, "bbox": mask_box(mask), "area": area, "segmentation": mask_rle(mask)}
        )
    return out


def coco_document(images: Sequence[dict[str, Any]], info: dict[str, Any]) -> dict[str, Any]:
    """The COCO file of a dataset.

    Args:
        images: per image, in order: `file_name`, `width`, `height`, `objects` (records of
            `object_annotations`) and any other keys, kept on the image entry (`row`, `kind`,
            `edit`, `seed`). Image ids are 1, 2, ... in this order.
        info: COCO's `info` block.

    Returns:
        `{"info", "licenses", "images", "annotations", "categories"}`: one category per
        object name (sorted, ids from 1), one annotation per object of each image
        (`iscrowd` 0, segmentation as compressed RLE).
    """
    names = sorted({o["name"] for image in images for o in image["objects"]})
    category = {name: i for i, name in enumerate(names, start=1)}
    entries: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, image in enumerate(images, start=1):
        entries.append({"id": image_id, **{k: v for k, v in image.items() if k != "objects"}})
        for obj in image["objects"]:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[obj["name"]],
                    "bbox": obj["bbox"],
                    "area": obj["area"],
                    "segmentation": obj["segmentation"],
                    "iscrowd": 0,
                }
            )
    return {
        "info": info,
        "licenses": [],
        "images": entries,
        "annotations": annotations,
        "categories": [
            {"id": i, "name": n, "supercategory": "object"} for n, i in category.items()
        ],
    }
