"""Prune, verify, export/import and the option parsers of `layoutedit cache`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from layoutedit.errors import UserError
from layoutedit_cache import ConceptCache
from layoutedit_cache.maintenance import prune, verify
from layoutedit_cache.transfer import export_entry, import_entry
from layoutedit_cache.units import format_age, format_size, parse_duration, parse_size

DAY = 86400.0
KEYS = [f"{i:x}" * 64 for i in range(1, 6)]


@pytest.fixture
def cache(tmp_path: Path) -> ConceptCache:
    return ConceptCache(tmp_path / "cache", report=lambda line: None)


def _put_at(
    cache: ConceptCache, monkeypatch: pytest.MonkeyPatch, key: str, when: float, n: int
) -> int:
    """Store an entry of n float32 values as if at time `when`; returns its size in bytes."""
    monkeypatch.setattr("layoutedit_cache.store.time.time", lambda: when)
    entry = cache.put(key, "concept", {"a": {"x": torch.zeros(n)}}, {"scene": key[:2]})
    monkeypatch.undo()
    return entry.size


def test_prune_by_age_uses_last_use(cache: ConceptCache, monkeypatch: pytest.MonkeyPatch) -> None:
    now = 100 * DAY
    _put_at(cache, monkeypatch, KEYS[0], now - 40 * DAY, 10)
    _put_at(cache, monkeypatch, KEYS[1], now - 20 * DAY, 10)
    _put_at(cache, monkeypatch, KEYS[2], now - 1 * DAY, 10)
    report = prune(cache, older_than=30 * DAY, now=now)
    assert [e.key for e in report.removed] == [KEYS[0]]
    assert cache.all_keys() == KEYS[1:3] and not (cache.artifacts_dir / KEYS[0]).exists()
    assert prune(cache, older_than=10 * DAY, now=now, dry_run=True).removed[0].key == KEYS[1]
    assert cache.all_keys() == KEYS[1:3]  # dry run removed nothing


def test_prune_by_size_drops_least_recently_used_first(
    cache: ConceptCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = [_put_at(cache, monkeypatch, k, 1000.0 + i, 1000) for i, k in enumerate(KEYS[:4])]
    # KEYS[0] is the oldest write but is used now, so it is the most recently used.
    monkeypatch.setattr("layoutedit_cache.store.time.time", lambda: 2000.0)
    assert cache.get(KEYS[0]) is not None
    monkeypatch.undo()
    limit = sizes[0] * 2 + 10
    report = prune(cache, max_size=limit)
    assert [e.key for e in report.removed] == [KEYS[1], KEYS[2]]
    assert cache.all_keys() == [KEYS[0], KEYS[3]]
    assert cache.total_size() <= limit == report.kept_size + 10
    assert prune(cache, max_size=0).kept == 0 and cache.all_keys() == []


def test_prune_clears_stale_format_entries_and_leftovers(cache: ConceptCache) -> None:
    cache.put(KEYS[0], "concept", {"a": {"x": torch.zeros(3)}}, {})
    cache.put(KEYS[1], "concept", {"a": {"x": torch.zeros(3)}}, {})
    index = cache._open(create=False)
    assert index is not None
    record = json.loads(index.get(KEYS[0]))
    record["format"] = 0
    index.set(KEYS[0], json.dumps(record))
    (cache.tmp_dir / f"{KEYS[2]}.123.abcd").mkdir()  # a dead writer's staging folder
    report = prune(cache)
    assert report.removed == [] and report.stale_removed == 1 and report.leftovers_removed == 1
    assert cache.all_keys() == [KEYS[1]] and not any(cache.tmp_dir.iterdir())


def test_verify_finds_bad_entries_and_fix_evicts_them(cache: ConceptCache) -> None:
    for key in KEYS[:3]:
        cache.put(key, "concept", {"a": {"x": torch.zeros(3)}, "b": {"y": torch.ones(2)}}, {})
    assert verify(cache).ok and verify(cache).checked == 3
    path = cache.artifacts_dir / KEYS[1] / "b.safetensors"
    path.write_bytes(path.read_bytes()[:-1] + b"\x00")
    report = verify(cache)
    assert not report.ok and [p.key for p in report.bad] == [KEYS[1]]
    assert "corrupted" in report.bad[0].message
    assert cache.all_keys() == KEYS[:3]  # without fix nothing is removed
    fixed = verify(cache, fix=True)
    assert fixed.ok and [p.fixed for p in fixed.problems] == [True]
    assert cache.all_keys() == [KEYS[0], KEYS[2]] and verify(cache).ok


@pytest.mark.parametrize("suffix", [".tar", ".safetensors"])
def test_export_then_import_round_trips(tmp_path: Path, cache: ConceptCache, suffix: str) -> None:
    groups = {
        "embeddings": {"<cat>": torch.randn(8), "<new0>": torch.randn(8)},
        "kv": {"a.attn2.to_k.weight": torch.randn(4, 8).half(), "n": torch.arange(3)},
    }
    meta = {"scene": "cat", "objects": ["cat"], "model": "builtin:shapes-tiny", "n": 1.5}
    original = cache.put(KEYS[0], "concept", groups, meta)
    file = tmp_path / f"out{suffix}"
    export_entry(cache, KEYS[0], file)
    assert b"pickle" not in file.read_bytes()[:1000]
    other = ConceptCache(tmp_path / "other")
    assert import_entry(other, file) == (KEYS[0], True)
    got = other.get(KEYS[0])
    assert got is not None
    assert (got.kind, got.meta, got.created) == ("concept", meta, original.created)
    for name, group in groups.items():
        back = got.tensors(name)
        assert back.keys() == group.keys()
        assert all(back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in group.items())
    assert import_entry(other, file) == (KEYS[0], False)  # already there
    assert import_entry(other, file, force=True) == (KEYS[0], True)


def test_a_tar_export_holds_only_a_manifest_and_safetensors(
    tmp_path: Path, cache: ConceptCache
) -> None:
    cache.put(KEYS[0], "concept", {"a": {"x": torch.zeros(3)}}, {})
    file = tmp_path / "e.tar"
    export_entry(cache, KEYS[0], file)
    with tarfile.open(file) as tar:
        assert tar.getnames() == ["manifest.json", "artifacts/a.safetensors"]


def _rewrite_tar(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin:
            handle = tin.extractfile(member)
            assert handle is not None
            data = change.get(member.name, handle.read())
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))


def test_a_damaged_or_foreign_export_is_refused(tmp_path: Path, cache: ConceptCache) -> None:
    cache.put(KEYS[0], "concept", {"a": {"x": torch.zeros(64)}}, {})
    good = tmp_path / "e.tar"
    export_entry(cache, KEYS[0], good)
    with tarfile.open(good) as tar:
        handle = tar.extractfile("artifacts/a.safetensors")
        assert handle is not None
        blob = handle.read()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    damaged, old = tmp_path / "damaged.tar", tmp_path / "old.tar"
    _rewrite_tar(good, damaged, {"artifacts/a.safetensors": blob[:-4] + b"\x01\x00\x00\x00"})
    _rewrite_tar(good, old, {"manifest.json": json.dumps({**manifest, "format": 0}).encode()})
    single = tmp_path / "e.safetensors"
    export_entry(cache, KEYS[0], single)
    data = bytearray(single.read_bytes())
    data[-1] ^= 0xFF
    flipped = tmp_path / "flipped.safetensors"
    flipped.write_bytes(bytes(data))
    other = ConceptCache(tmp_path / "other")
    for file, words in [
        (damaged, "damaged"),
        (flipped, "damaged"),
        (old, "format"),
        (tmp_path / "nothing.tar", "not found"),
        (tmp_path / "e.zip", ".tar or .safetensors"),
    ]:
        with pytest.raises(UserError, match=words):
            import_entry(other, file)
    assert other.all_keys() == []


def test_units() -> None:
    assert parse_duration("12h") == 12 * 3600
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration("1.5w") == 1.5 * 7 * DAY
    assert parse_duration(" 90 m ") == 5400
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size("5GB") == parse_size("5g") == 5 * 10**9
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1234") == 1234
    for bad in ["", "30", "d", "-1d", "3 days", "1e3s"]:
        with pytest.raises(UserError) as info:
            parse_duration(bad)
        assert info.value.exit_code == 2
    for bad in ["", "GB", "-5GB", "5XB", "five"]:
        with pytest.raises(UserError):
            parse_size(bad)
    assert format_size(999) == "999 B" and format_size(5_200_000) == "5.2 MB"
    assert format_age(1000.0, now=1000.0 + 3 * 3600 + 5) == "3h ago"


def test_the_cache_never_imports_torch_for_listing() -> None:
    code = (
        "import sys, layoutedit_cache, layoutedit_cache.maintenance, layoutedit_cache.transfer;"
        "import layoutedit_cache.units; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
