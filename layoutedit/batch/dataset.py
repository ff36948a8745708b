"""The merged outputs of a batch: `metadata.jsonl`, `coco.json` and `summary.json`.

Built by the last process of a run from the rows' records (`rows/<id>/row.json`), in
manifest order, so that the files are the same whatever the number of processes:

- `metadata.jsonl`: one line per image (each row's `source.png` and its edited images), in
  the form the Hugging Face `imagefolder` loader reads (`file_name` relative to the folder;
  columns `row`, `line`, `kind` (`source` | `edit`), `edit`, `seed`, `best`, `loss`,
  `operations`, `layout`, `scene`, `coco_image_id` and `objects` (`name`, `bbox`, `area`
  lists, boxes `[x, y, w, h]` in pixels));
- `coco.json`: the same images with one annotation per object (box and RLE mask): for a
  source image its mask, for an edited image the target layout it was edited to (exact for
  layout operations; for a painted layout file, the painted regions);
- `summary.json`: rows done (by this run), skipped (done by an earlier run), failed (with
  reasons) and bad (with `--skip-bad-rows`); seconds; UNet evaluations; per process.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from layoutedit.batch.coco import coco_document
from layoutedit.batch.manifest import Manifest
from layoutedit.batch.workspace import ROWS, Workspace
from layoutedit.version import __version__


@dataclass
class Merged:
    """The state of every row of a manifest, and the files made from it."""

    done: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(line, record) of rows done by this run."""
    skipped: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(line, record) of rows done by an earlier run."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """Ids with neither outputs nor a failure (still running, or cut short)."""

    @property
    def complete(self) -> bool:
        """Every row is done or failed."""
        return not self.missing


def collect(manifest: Manifest, workspace: Workspace, fingerprint: str) -> Merged:
    """Where each row of `manifest` stands, from the records in the workspace."""
    merged = Merged()
    for row in manifest.rows:
        key = row.key(fingerprint)
        found = workspace.record(row.id)
        if found is not None and found[1].get("key") == key:
            (merged.done if found[0] == "stage" else merged.skipped).append((row.line, found[1]))
            continue
        failure = workspace.failure(row.id)
        if failure is not None and failure.get("key") == key:
            merged.failed.append({"line": row.line, "id": row.id, "reason": failure.get("reason")})
        else:
            merged.missing.append(row.id)
    return merged


def _images(merged: Merged) -> list[dict[str, Any]]:
    """Every image of the done rows, in manifest order, with its row's fields."""
    rows = sorted(merged.done + merged.skipped, key=lambda item: item[0])
    out = []
    for line, record in rows:
        for image in record["images"]:
            out.append({**image, "row": record["id"], "line": line, "scene": record["scene"]})
    return out


def metadata_lines(images: list[dict[str, Any]]) -> str:
    """`metadata.jsonl` text: one JSON object a line, `file_name` first."""
    lines = []
    for number, image in enumerate(images, start=1):
        objects = image["objects"]
        entry = {
            "file_name": f"{ROWS}/{image['row']}/{image['file']}",
            "row": image["row"],
            "line": image["line"],
            "kind": image["kind"],
            "edit": image["edit"],
            "seed": image["seed"],
            "best": image["best"],
            "loss": image["loss"],
            "operations": image["operations"],
            "layout": image["layout"],
            "scene": image["scene"],
            "coco_image_id": number,
            "objects": {
                "name": [o["name"] for o in objects],
                "bbox": [o["bbox"] for o in objects],
                "area": [o["area"] for o in objects],
            },
        }
        lines.append(json.dumps(entry))
    return "".join(line + "\n" for line in lines)


def coco_text(images: list[dict[str, Any]], manifest: Manifest) -> str:
    """`coco.json` text (compact)."""
    entries = [
        {
            "file_name": f"{ROWS}/{image['row']}/{image['file']}",
            "width": image["width"],
            "height": image["height"],
            "row": image["row"],
            "kind": image["kind"],
            "edit": image["edit"],
            "seed": image["seed"],
            "objects": image["objects"],
        }
        for image in images
    ]
    info = {
        "description": f"layoutedit batch of {manifest.path.name}",
        "version": __version__,
        "contributor": "layoutedit",
    }
    return json.dumps(coco_document(entries, info), separators=(",", ":")) + "\n"


def summary(
    merged: Merged,
    manifest: Manifest,
    ranks: list[dict[str, Any]],
    *,
    model: str,
    fingerprint: str,
    world: int,
    split: str,
) -> dict[str, Any]:
    """`summary.json`: counts, failures with reasons, seconds and UNet evaluations."""
    evals: dict[str, dict[str, int]] = {}
    row_seconds = 0.0
    for _line, record in merged.done:
        row_seconds += float(record.get("seconds", 0.0))
        for stage, counts in (record.get("unet_evaluations") or {}).items():
            into = evals.setdefault(stage, {})
            for k, v in counts.items():
                into[k] = into.get(k, 0) + int(v)
    started = min((float(r["started"]) for r in ranks), default=time.time())
    images = _images(merged)
    return {
        "manifest": str(manifest.path),
        "manifest_sha256": manifest.digest,
        "model": model,
        "model_fingerprint": fingerprint,
        "processes": world,
        "split": split,
        "rows": {
            "total": len(manifest.rows) + len(manifest.bad),
            "done": len(merged.done),
            "skipped": len(merged.skipped),
            "failed": len(merged.failed),
            "bad": len(manifest.bad),
        },
        "images": {
            "source": sum(i["kind"] == "source" for i in images),
            "edited": sum(i["kind"] == "edit" for i in images),
        },
        "seconds": round(time.time() - started, 3),
        "row_seconds": round(row_seconds, 3),
        "unet_evaluations": evals,
        "failures": merged.failed,
        "bad_rows": [b.as_dict() for b in manifest.bad],
        "per_process": sorted(ranks, key=lambda r: int(r["rank"])),
        "version": __version__,
    }


def dataset_files(
    merged: Merged, manifest: Manifest, summary_payload: dict[str, Any]
) -> dict[str, bytes]:
    """The top-level files of the output folder."""
    images = _images(merged)
    return {
        "metadata.jsonl": metadata_lines(images).encode(),
        "coco.json": coco_text(images, manifest).encode(),
        "summary.json": (json.dumps(summary_payload, indent=2) + "\n").encode(),
    }
