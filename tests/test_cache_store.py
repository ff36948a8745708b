"""The store: round trips, integrity on load, atomic writes and per-key locks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from layoutedit.errors import UserError
from layoutedit_cache import ConceptCache
from layoutedit_cache.keys import CACHE_FORMAT_VERSION
from layoutedit_cache.maintenance import verify

K1 = "a1" + "0" * 62
K2 = "a1" + "1" * 62
K3 = "b2" + "2" * 62


@pytest.fixture
def reports() -> list[str]:
    return []


@pytest.fixture
def cache(tmp_path: Path, reports: list[str]) -> ConceptCache:
    return ConceptCache(tmp_path / "cache", report=reports.append)


def _tensors() -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return {
        "embeddings": {
            "<cat>": torch.randn(8, generator=gen),
            "<pot>": torch.randn(8, generator=gen),
        },
        "kv": {
            "down.attn2.to_k.weight": torch.randn(4, 8, generator=gen).half(),
            "steps": torch.arange(5),
            "bf": torch.randn(3, generator=gen).bfloat16(),
        },
    }


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def _flip_last_byte(blob: bytes) -> bytes:
    return blob[:-1] + bytes([blob[-1] ^ 1])


def _artifact(cache: ConceptCache, key: str, name: str = "kv") -> Path:
    return cache.artifacts_dir / key / f"{name}.safetensors"


def test_put_then_get_round_trips_tensors_and_meta(cache: ConceptCache) -> None:
    assert cache.get(K1) is None
    meta = {"scene": "cat", "objects": ("cat", "pot"), "source": Path("/x/image.png")}
    put = cache.put(K1, "concept", _tensors(), meta)
    got = cache.get(K1)
    assert got is not None
    assert got.kind == "concept" and got.key == K1
    assert got.meta == {"scene": "cat", "objects": ["cat", "pot"], "source": "/x/image.png"}
    for name, group in _tensors().items():
        assert _same(got.tensors(name), group)
        assert _same(got.tensors(name), group)  # a second call reads and verifies the file
    files = {p.name: p.stat().st_size for p in (cache.artifacts_dir / K1).iterdir()}
    # Beside the artifacts, the copy of the index record that rebuilds a damaged index.
    assert files.keys() == {"embeddings.safetensors", "kv.safetensors", "record.json"}
    assert got.size == put.size == sum(v for k, v in files.items() if k != "record.json")
    assert got.created == put.created <= got.last_used
    assert not any(cache.tmp_dir.iterdir())


def test_a_hit_updates_last_used(cache: ConceptCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("layoutedit_cache.store.time.time", lambda: 1000.0)
    cache.put(K1, "concept", _tensors(), {})
    monkeypatch.setattr("layoutedit_cache.store.time.time", lambda: 5000.0)
    assert cache.get(K1) is not None
    (entry,) = cache.entries()
    assert (entry.created, entry.last_used) == (1000.0, 5000.0)


def test_put_replaces_an_entry_and_leaves_no_staging(cache: ConceptCache) -> None:
    cache.put(K1, "concept", _tensors(), {"v": 1})
    cache.put(K1, "concept", {"only": {"x": torch.ones(2)}}, {"v": 2})
    got = cache.get(K1)
    assert got is not None and got.meta == {"v": 2} and got.artifact_names == ("only",)
    assert sorted(p.name for p in (cache.artifacts_dir / K1).iterdir()) == [
        "only.safetensors",
        "record.json",
    ]
    assert not any(cache.tmp_dir.iterdir())


def test_bad_puts_are_refused_and_write_nothing(cache: ConceptCache) -> None:
    with pytest.raises(ValueError):
        cache.put("A1" + "0" * 62, "concept", _tensors(), {})
    with pytest.raises(ValueError):
        cache.put(K1, "concept", {"../evil": {"x": torch.ones(1)}}, {})
    with pytest.raises(TypeError):
        cache.put(K1, "concept", {"a": {"x": [1.0]}}, {})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        cache.put(K1, "concept", {"a": {"x": torch.ones(1)}}, {"bad": object()})
    assert cache.get(K1) is None and not cache.artifacts_dir.exists()


def test_reading_an_absent_cache_creates_nothing(tmp_path: Path) -> None:
    cache = ConceptCache(tmp_path / "nowhere")
    assert cache.get(K1) is None and cache.entries() == [] and cache.all_keys() == []
    assert not (tmp_path / "nowhere").exists()


def test_resolve_by_prefix(cache: ConceptCache) -> None:
    for key in (K1, K2, K3):
        cache.put(key, "concept", {"a": {"x": torch.ones(1)}}, {})
    assert cache.resolve("b2") == K3
    assert cache.resolve(K1.upper()) == K1
    assert cache.resolve("a10") == K1
    for bad, words in [("a1", "matches 2"), ("c", "no cache entry"), ("xyz", "not a cache key")]:
        with pytest.raises(UserError, match=words):
            cache.resolve(bad)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-7]), "truncated"),
        (lambda p: p.write_bytes(_flip_last_byte(p.read_bytes())), "corrupted"),
        (lambda p: p.unlink(), "missing"),
    ],
    ids=["truncated", "bitflip", "missing"],
)
def test_a_damaged_artifact_is_reported_evicted_and_never_used(
    cache: ConceptCache, reports: list[str], damage: object, words: str
) -> None:
    cache.put(K1, "concept", _tensors(), {})
    damage(_artifact(cache, K1))  # type: ignore[operator]
    assert cache.get(K1) is None
    assert len(reports) == 1 and "\n" not in reports[0]
    assert K1[:12] in reports[0] and words in reports[0] and "evicted" in reports[0]
    assert cache.all_keys() == [] and not (cache.artifacts_dir / K1).exists()
    assert verify(cache).ok
    cache.put(K1, "concept", _tensors(), {})  # recomputed and stored again
    assert cache.get(K1) is not None


def test_an_unreadable_record_is_evicted(cache: ConceptCache, reports: list[str]) -> None:
    cache.put(K1, "concept", _tensors(), {})
    index = cache._open(create=False)
    assert index is not None
    index.set(K1, "{not json")
    assert cache.get(K1) is None
    assert len(reports) == 1 and cache.all_keys() == []


def test_an_old_format_entry_is_ignored_not_misread(
    cache: ConceptCache, reports: list[str]
) -> None:
    cache.put(K1, "concept", _tensors(), {})
    index = cache._open(create=False)
    assert index is not None
    record = json.loads(index.get(K1))
    record["format"] = CACHE_FORMAT_VERSION + 1
    index.set(K1, json.dumps(record))
    assert cache.get(K1) is None
    assert reports == [] and cache.all_keys() == [K1]  # left for `prune`, not reported as damage
    assert cache.entries() == []
    report = verify(cache)
    assert report.ok and [p.stale for p in report.problems] == [True]


def test_lock_is_reentrant_and_put_takes_it_inside(cache: ConceptCache) -> None:
    with cache.lock(K1), cache.lock(K1):
        cache.put(K1, "concept", _tensors(), {})
        assert cache.get(K1) is not None


def test_threads_that_learn_one_key_learn_it_once(cache: ConceptCache) -> None:
    computed: list[int] = []
    barrier = threading.Barrier(3)

    def learner(i: int) -> None:
        barrier.wait()
        with cache.lock(K1):
            if cache.get(K1) is None:
                computed.append(i)
                time.sleep(0.05)
                cache.put(K1, "concept", {"a": {"x": torch.full((2,), float(i))}}, {"by": i})

    threads = [threading.Thread(target=learner, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(computed) == 1


LEARNER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import torch
    from layoutedit_cache import ConceptCache
    root, key, counter, ready, me = sys.argv[1:]
    cache = ConceptCache(Path(root))
    Path(ready, me).touch()
    while len(os.listdir(ready)) < 2:  # start both learners together
        time.sleep(0.01)
    waited = []
    with cache.lock(key, on_wait=lambda: waited.append(1)):
        if cache.get(key) is None:
            with open(counter, "a") as fh:
                fh.write(me + "\\n")
            time.sleep(1.0)  # "learning"
            cache.put(key, "concept", {"emb": {"x": torch.arange(4.0)}}, {"by": me})
    print(cache.get(key).meta["by"], "waited" if waited else "first")
    """
)


def test_two_processes_that_learn_one_scene_learn_it_once(tmp_path: Path) -> None:
    script = tmp_path / "learner.py"
    script.write_text(LEARNER)
    counter, ready = tmp_path / "count.txt", tmp_path / "ready"
    ready.mkdir()
    root = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), K1, str(counter), str(ready), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("p1", "p2")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert len(counter.read_text().split()) == 1
    lines = sorted(o[0].split() for o in outs)
    assert lines[0][0] == lines[1][0]  # both read the one learned entry


def test_a_waiter_is_told_once_then_gets_the_lock(cache: ConceptCache) -> None:
    held, release = threading.Event(), threading.Event()
    told: list[str] = []

    def holder() -> None:
        with cache.lock(K1):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    got = threading.Event()

    def waiter() -> None:
        with cache.lock(K1, on_wait=lambda: told.append("w")):
            got.set()

    second = threading.Thread(target=waiter)
    second.start()
    for _ in range(3000):  # the waiter reports before it blocks
        if told:
            break
        time.sleep(0.01)
    assert told == ["w"] and not got.is_set()
    release.set()
    thread.join()
    second.join(30)
    assert got.is_set() and told == ["w"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import layoutedit_cache.store as store
    root, key, marker, where = sys.argv[1:]

    def stop_here():
        Path(marker).touch()
        time.sleep(600)

    if where == "file":
        def write_half(path, blob):
            with open(path, "xb") as fh:
                fh.write(blob[: len(blob) // 2])
                fh.flush()
            stop_here()
        store.write_durable = write_half
    else:  # after the folder is in place, before the index entry is written
        import diskcache
        diskcache.Cache.set = lambda self, *a, **k: stop_here()
    blob = open(sys.argv[0].replace("writer.py", "big.bin"), "rb").read()
    store.ConceptCache(Path(root)).put_blobs(key, "concept", {"kv": blob}, {})
    """
)


@pytest.mark.parametrize("where", ["file", "index"])
def test_a_write_killed_midway_leaves_no_entry(
    tmp_path: Path, cache: ConceptCache, where: str
) -> None:
    from safetensors.torch import save

    (tmp_path / "big.bin").write_bytes(save({"w": torch.zeros(2_000_000)}))  # 8 MB artifact
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    marker = tmp_path / "midway"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(cache.root), K1, str(marker), where],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    assert cache.get(K1) is None
    report = verify(cache)
    assert report.ok and report.problems == [] and len(report.leftovers) == 1
    assert verify(cache, fix=True).leftovers_removed == 1
    assert not any(cache.tmp_dir.iterdir()) and not any(cache.artifacts_dir.glob("*"))
    # The dead writer's lock is gone with it: the next learner goes ahead.
    with cache.lock(K1):
        cache.put(K1, "concept", _tensors(), {})
    assert cache.get(K1) is not None


def test_without_flock_the_lock_falls_back_and_warns_once(
    cache: ConceptCache, reports: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("fcntl.flock", refuse)  # what filelock calls
    for key in (K1, K2):
        with cache.lock(key):
            cache.put(key, "concept", _tensors(), {})
    assert cache.get(K1) is not None and cache.get(K2) is not None
    assert len(reports) == 1 and "cross-process cache locks are not available" in reports[0]
