"""One call on a lent GPU: train the embedded model on, gate it, pack what comes back.

Two CPU cores moved the gate's colour-and-shape presence from 0.14 to 0.16 in days of
training (`make evaluate-model`; shapes-world.md asks 0.8). A GPU runs the same recipe
hundreds of times faster, but one is lent for minutes, in calls of at most ten, on a bare
machine whose files come back only as up to 8 files of at most 16 MiB. This driver fits the recipe
into one such call:

1. continue from the shipped model (`train --init-from`: its VAE, so latents, concepts and
   the decoder fine-tune stay valid) on more scenes, with a wall-clock budget that ends the
   learning-rate schedule inside it (`train --max-minutes`);
2. run the gate on the shipped model and on the new one, on the same device;
3. pack the new model folder as a tar split into parts under the size limit, with the two
   gate reports, the sample grid and the training log beside it.

The device image has PyTorch and transformers but not diffusers: `make device-site` zips the
installed diffusers (pure Python) into `.device-site/` (git-ignored), which the call carries
and puts on `PYTHONPATH`. The call itself is `make device-train` (see the Makefile). Here,
after it: `make device-model-install FROM=<files_at>` unpacks the model into
`layoutedit/models/shapes-tiny`; then `make evaluate-model`, the bench and the demo decide
whether it ships.
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import time
from pathlib import Path

from layoutedit.shapes import evaluate, train
from layoutedit.shapes.training_io import continuable_model, trained_steps

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "shapes-tiny"
PART_BYTES = 15 * 2**20
"""Each part of the packed model stays under the device tool's 16 MiB per file."""
MODEL_TAR = "model.tar"


def pack_model(model: Path, out: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """Write `model` (a pipeline folder) as `out/model.tar.part-N` pieces of at most
    `part_bytes` each; concatenated in name order they are one tar of the folder's files."""
    whole = out / MODEL_TAR
    with tarfile.open(whole, "w") as tar:
        for path in sorted(model.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(model).as_posix())
    data = whole.read_bytes()
    whole.unlink()
    parts = []
    for n, at in enumerate(range(0, max(len(data), 1), part_bytes)):
        part = out / f"{MODEL_TAR}.part-{n}"
        part.write_bytes(data[at : at + part_bytes])
        parts.append(part)
    return parts


def unpack_model(folder: Path, target: Path) -> Path:
    """Join `folder/model.tar.part-*` and extract the model folder into `target` (replaced).

    Raises:
        FileNotFoundError: no parts in `folder`.
        tarfile.TarError: the parts are no tar, or it holds a link or a path outside `target`.
        ValueError: the tar holds no model folder (`model_index.json`).
    """
    parts = sorted(folder.glob(f"{MODEL_TAR}.part-*"), key=lambda p: int(p.name.rsplit("-")[-1]))
    if not parts:
        raise FileNotFoundError(f"{folder}: no {MODEL_TAR}.part-* files")
    joined = target.with_name(target.name + ".tar")
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    staging = target.with_name(target.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(joined) as tar:
            tar.extractall(staging, filter="data")  # refuses links and paths outside
        if not (staging / "model_index.json").is_file():
            raise ValueError(f"{folder}: the packed files hold no model folder")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        joined.unlink()
    old = target.with_name(target.name + ".old")
    if target.exists():
        target.replace(old)
    staging.replace(target)
    if old.exists():
        shutil.rmtree(old)
    return target


def zip_package(package: str, target: Path) -> Path:
    """Zip an installed pure-Python package's source (no caches) so that `target` on
    `sys.path` imports it; written whole or not at all."""
    import importlib
    import zipfile

    root = Path(importlib.import_module(package).__file__ or "").parent
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                archive.write(path, (Path(package) / path.relative_to(root)).as_posix())
    tmp.replace(target)
    return target


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, help="Where the files to bring back go.")
    ap.add_argument(
        "--site", type=Path, help="Instead: zip the installed diffusers into this folder."
    )
    ap.add_argument("--unpack", type=Path, help="Instead: install the model packed in this folder.")
    ap.add_argument("--to", type=Path, default=SHIPPED, help="With --unpack: the model folder.")
    ap.add_argument("--run-dir", type=Path, default=Path("/tmp/layoutedit-device-run"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--minutes", type=float, default=4.5, help="Budget of the UNet stage.")
    ap.add_argument("--scenes", type=int, default=40000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--gate-scenes", type=int, default=200)
    ap.add_argument(
        "--model", type=continuable_model, default=SHIPPED, help="The model to continue."
    )
    ap.add_argument("--size", default="shapes-tiny", help="train --size (tests: test-tiny).")
    args = ap.parse_args(argv)
    if args.site is not None:
        print(zip_package("diffusers", args.site / "diffusers.zip"))
        return
    if args.unpack is not None:
        try:
            print(unpack_model(args.unpack, args.to))
        except (OSError, ValueError, tarfile.TarError) as exc:
            ap.exit(2, f"device_train: error: --unpack {args.unpack}: {exc}\n")
        return
    if args.out is None:
        ap.error("--out is required (or --site, or --unpack)")
    began = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    export = args.run_dir / "export"
    # The time budget, not the step count, ends the run: the count only has to be out of reach.
    unreachable = trained_steps(args.model) + 1_000_000
    train.main(
        [
            "--run-dir", str(args.run_dir), "--init-from", str(args.model),
            "--size", args.size, "--scenes", str(args.scenes),
            "--unet-steps", str(unreachable), "--unet-batch", str(args.batch),
            "--lr", str(args.lr), "--device", args.device, "--workers", str(args.workers),
            "--threads", str(args.threads), "--max-minutes", str(args.minutes),
            "--export", str(export),
        ]
    )  # fmt: skip
    gate = ["--scenes", str(args.gate_scenes), "--device", args.device]
    evaluate.main(["--model", str(args.model), "--json", str(args.out / "gate-before.json"), *gate])
    evaluate.main(
        [
            "--model", str(export), "--json", str(args.out / "gate.json"),
            "--samples", str(args.out / "samples.png"), *gate,
        ]
    )  # fmt: skip
    parts = pack_model(export, args.out)
    log = args.run_dir / "train.log"
    if log.exists():
        (args.out / "train.log").write_text(log.read_text())
    print(
        f"device_train: {len(parts)} model part(s) and the gates in {args.out}, "
        f"{(time.monotonic() - began) / 60:.1f} min",
        flush=True,
    )


if __name__ == "__main__":
    main()
