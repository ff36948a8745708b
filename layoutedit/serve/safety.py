"""What the app may reach: which addresses it binds to, and which files it reads.

- Binding: loopback addresses (127.0.0.0/8, ::1, `localhost`) are the default; any other
  address (`0.0.0.0` exposes the app to the network, with no login) needs `allow_remote`.
- Files: a scene is named by its path relative to the root folder; the resolved path (links
  followed) must stay inside the root, so `..`, absolute paths and links out are refused.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from layoutedit.errors import UserError
from layoutedit.scenes.scene import LABELS_NAME, MASK_NAME

MAX_SCENES_LISTED = 200
_MAX_DEPTH = 3  # folders below the root searched for scenes


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address or `localhost`."""
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> str | None:
    """Check the bind address; returns a warning to show for a remote binding, else None.

    Raises:
        UserError: a non-loopback address without `allow_remote`.
    """
    if is_loopback(host):
        return None
    if not allow_remote:
        raise UserError(
            f"--host {host} would expose the app (no login, your files under --root) to the "
            "network; add --allow-remote if that is what you want"
        )
    return (
        f"serving on {host}: anyone who can reach this machine can use the app and read the "
        "scenes under --root"
    )


def resolve_under(root: Path, name: str) -> Path:
    """The folder or file `name` (relative to `root`) as an absolute path inside `root`.

    Raises:
        UserError: an absolute path, a path leaving the root (`..`, a link out), or one that
            does not exist. The message never says what lies outside the root.
    """
    base = root.resolve()
    text = name.strip()
    if not text:
        raise UserError("name a scene folder under the root")
    relative = Path(text)
    if relative.is_absolute() or relative.drive or ".." in relative.parts:
        raise UserError(f"{text!r} is not a path inside the root folder")
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise UserError(f"{text!r} is not a path inside the root folder")
    if not target.exists():
        raise UserError(f"{text!r} does not exist under the root folder")
    return target


def is_scene_folder(folder: Path) -> bool:
    """Whether `folder` holds a mask and a label map (an image is checked on opening)."""
    return (folder / MASK_NAME).is_file() and (folder / LABELS_NAME).is_file()


def list_scenes(root: Path) -> list[str]:
    """Scene folders under `root` (itself included, as `.`), relative, sorted; links that
    lead out of the root are skipped. At most MAX_SCENES_LISTED, `_MAX_DEPTH` levels deep."""
    base = root.resolve()
    found: list[str] = []
    frontier = [base]
    for _ in range(_MAX_DEPTH + 1):
        next_level: list[Path] = []
        for folder in frontier:
            if is_scene_folder(folder):
                found.append(folder.relative_to(base).as_posix() or ".")
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                real = child.resolve()
                if base in real.parents and not child.name.startswith("."):
                    next_level.append(real)
            if len(found) >= MAX_SCENES_LISTED:
                return sorted(found)
        frontier = next_level
    return sorted(found)
