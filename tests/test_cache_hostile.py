"""The cache under broken or hostile conditions (issue #20, item 3): a read-only folder, a
damaged index, imports that lie, times that are not numbers."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from cli_support import run_cli

from layoutedit_cache import ConceptCache

K1, K2 = "3fa9" + "1" * 60, "81be" + "2" * 60
NO_MODEL = "/nonexistent/model-folder"


def _filled(root: Path) -> Path:
    cache = ConceptCache(root)
    cache.put(K1, "concept", {"kv": {"w": torch.arange(6.0)}}, {"scene": "cat", "objects": ["a"]})
    cache.put(K2, "inversion", {"latents": {"z": torch.ones(2, 2)}}, {"scene": "cat"})
    cache.close()
    return root


def _one_line(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, err


# --- a read-only cache folder ------------------------------------------------------------------


def _read_only_runner() -> list[str]:
    """A prefix that runs a command without the power to write read-only files: nothing as
    an ordinary user; as root, root without CAP_DAC_OVERRIDE (setpriv)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", drop, "--inh-caps", drop]


def _run_read_only(cache: Path, *args: str) -> tuple[int, str, str]:
    command = [*_read_only_runner(), sys.executable, "-m", "layoutedit", "--model", NO_MODEL]
    command += ["--cache-dir", str(cache), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def read_only_cache(tmp_path: Path) -> Path:
    root = _filled(tmp_path / "cache")
    for path in [root, *root.rglob("*")]:
        mode = 0o555 if path.is_dir() else 0o444
        path.chmod(mode)
    yield root
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_reading_commands_work_on_a_read_only_cache(read_only_cache: Path, tmp_path: Path) -> None:
    code, out, err = _run_read_only(read_only_cache, "--json", "cache", "ls")
    assert code == 0, err
    assert sorted(row["key"] for row in json.loads(out)) == [K1, K2]
    code, out, err = _run_read_only(read_only_cache, "cache", "show", K1[:6])
    assert code == 0 and "w: F32 [6]" in out, out + err
    code, out, err = _run_read_only(read_only_cache, "cache", "verify")
    assert code == 0 and "all good" in out, out + err
    export = tmp_path / "out" / "k1.tar"
    code, _, err = _run_read_only(read_only_cache, "cache", "export", K1[:6], str(export))
    assert code == 0 and export.is_file(), err


@pytest.mark.parametrize(
    "args",
    [
        ["cache", "rm", K1[:6]],
        ["cache", "prune", "--max-size", "1B"],
        ["cache", "verify", "--fix"],
        ["learn", "SCENE"],
    ],
)
def test_writing_commands_say_the_cache_is_read_only(
    read_only_cache: Path, tmp_path: Path, args: list[str]
) -> None:
    from hardening_support import write_scene

    scene = write_scene(tmp_path / "scene")
    args = [str(scene) if a == "SCENE" else a for a in args]
    code, _, err = _run_read_only(read_only_cache, *args)
    _one_line(code, err, "read-only")
    assert sorted(ConceptCache(read_only_cache).all_keys()) == [K1, K2]


def test_an_import_into_a_read_only_cache_says_so(read_only_cache: Path, tmp_path: Path) -> None:
    export = tmp_path / "k1.tar"
    assert run_cli(NO_MODEL, read_only_cache, "cache", "export", K1, str(export))[0] == 0
    code, _, err = _run_read_only(read_only_cache, "cache", "import", str(export), "--force")
    _one_line(code, err, "read-only")


# --- a damaged index ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["garbage", "folder-is-a-file"])
def test_a_damaged_index_says_how_to_repair_and_fix_rebuilds_it(
    tmp_path: Path, damage: str
) -> None:
    root = _filled(tmp_path / "cache")
    if damage == "garbage":
        for extra in (root / "index").glob("cache.db-*"):
            extra.unlink()
        (root / "index" / "cache.db").write_bytes(b"this is not a database" * 100)
    else:
        shutil.rmtree(root / "index")
        (root / "index").write_text("not a folder")
    for args in (["cache", "ls"], ["cache", "show", K1[:6]], ["cache", "verify"]):
        code, _, err = run_cli(NO_MODEL, root, *args)
        _one_line(code, err, "damaged", "cache verify --fix")
    code, _, err = run_cli(NO_MODEL, root, "cache", "verify", "--fix")
    assert code == 0, err
    assert "rebuilt from the artifacts, 2 entries restored" in err
    cache = ConceptCache(root)
    assert cache.all_keys() == sorted([K1, K2])
    entry = cache.get(K1)
    assert entry is not None and entry.meta["objects"] == ["a"]
    assert torch.equal(entry.tensors("kv")["w"], torch.arange(6.0))  # the stored bytes


def test_a_record_with_a_nan_time_is_damage_not_a_crash(tmp_path: Path) -> None:
    root = _filled(tmp_path / "cache")
    cache = ConceptCache(root)
    index = cache._open(create=False)
    record = json.loads(index.get(K1))
    record["created"] = float("nan")
    index.set(K1, json.dumps(record))
    cache.close()
    for args in (["cache", "ls"], ["--json", "cache", "ls"]):
        code, out, err = run_cli(NO_MODEL, root, *args)
        assert code == 0 and "Traceback" not in err, err
    assert "DAMAGED" in run_cli(NO_MODEL, root, "cache", "ls")[1]
    code, out, err = run_cli(NO_MODEL, root, "cache", "verify")
    assert code == 1 and "not a finite number" in err, out + err
    assert run_cli(NO_MODEL, root, "cache", "verify", "--fix")[0] == 0
    assert ConceptCache(root).all_keys() == [K2]


# --- imports that lie --------------------------------------------------------------------------


def _export(tmp_path: Path) -> tuple[dict, bytes]:
    root = _filled(tmp_path / "source")
    file = tmp_path / "good.tar"
    assert run_cli(NO_MODEL, root, "cache", "export", K1, str(file))[0] == 0
    with tarfile.open(file) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        blob = tar.extractfile("artifacts/kv.safetensors").read()
    return manifest, blob


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _nothing_stored(root: Path) -> None:
    assert not (root / "artifacts").exists() or not any((root / "artifacts").iterdir())
    assert ConceptCache(root).all_keys() == []


LIES = {
    "created NaN": lambda m: m.update(created=float("nan")),
    "created infinite": lambda m: m.update(created=float("inf")),
    "created a word": lambda m: m.update(created="yesterday"),
    "created true": lambda m: m.update(created=True),
    "created in 3000": lambda m: m.update(created=32_503_680_000),
    "kind a number": lambda m: m.update(kind=5),
    "kind with spaces": lambda m: m.update(kind="Bad Kind"),
    "meta a list": lambda m: m.update(meta=["x"]),
    "meta with NaN": lambda m: m.update(meta={"x": float("nan")}),
    "artifacts a string": lambda m: m.update(artifacts="kv"),
    "artifact a number": lambda m: m.update(artifacts=[1]),
    "artifact without name": lambda m: m["artifacts"][0].pop("name"),
    "artifact name a path": lambda m: m["artifacts"][0].update(name="../../x"),
    "artifact size negative": lambda m: m["artifacts"][0].update(size=-1),
    "artifact size a string": lambda m: m["artifacts"][0].update(size="12"),
    "artifact twice": lambda m: m["artifacts"].append(dict(m["artifacts"][0])),
    "no sha256": lambda m: m["artifacts"][0].pop("sha256"),
    "export version 2": lambda m: m.update(export_version=2),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_an_import_is_checked_whole_before_anything_is_written(tmp_path: Path, lie: str) -> None:
    manifest, blob = _export(tmp_path)
    LIES[lie](manifest)
    text = json.dumps(manifest).encode()  # NaN and Infinity as Python's json writes them
    file = _tar(tmp_path / "lie.tar", [("manifest.json", text), ("artifacts/kv.safetensors", blob)])
    root = tmp_path / "cache"
    code, _, err = run_cli(NO_MODEL, root, "cache", "import", str(file))
    _one_line(code, err, str(file))
    _nothing_stored(root)


def test_a_huge_member_is_refused_by_its_name_and_size_before_it_is_read(
    tmp_path: Path,
) -> None:
    manifest, _ = _export(tmp_path)
    head = tarfile.TarInfo("manifest.json")
    text = json.dumps(manifest).encode()
    head.size = len(text)
    for name in ("artifacts/evil.safetensors", "artifacts/kv.safetensors"):
        huge = tarfile.TarInfo(name)
        huge.size = 2 << 30  # 2 GiB claimed; the file holds a few bytes of it
        data = head.tobuf() + text + b"\0" * (-len(text) % 512) + huge.tobuf() + b"x" * 4096
        file = tmp_path / "bomb.tar"
        file.write_bytes(data)
        code, _, err = run_cli(NO_MODEL, tmp_path / "cache", "cache", "import", str(file))
        _one_line(code, err)
        assert "unexpected tar member" in err or "damaged" in err, err
        _nothing_stored(tmp_path / "cache")


def test_a_tar_whose_manifest_is_not_first_is_refused(tmp_path: Path) -> None:
    manifest, blob = _export(tmp_path)
    members = [("artifacts/kv.safetensors", blob), ("manifest.json", json.dumps(manifest).encode())]
    file = _tar(tmp_path / "late.tar", members)
    code, _, err = run_cli(NO_MODEL, tmp_path / "cache", "cache", "import", str(file))
    _one_line(code, err, "manifest.json")
    _nothing_stored(tmp_path / "cache")


def test_import_of_a_folder_or_a_missing_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dir.tar").mkdir()
    for file, word in ((tmp_path / "dir.tar", "not a file"), (tmp_path / "no.tar", "not found")):
        code, _, err = run_cli(NO_MODEL, tmp_path / "cache", "cache", "import", str(file))
        _one_line(code, err, word)
