"""`layoutedit cache ...` through the real app, on a cache folder given with --cache-dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from layoutedit.cli.app import app
from layoutedit_cache import ConceptCache

K1 = "3fa9" + "1" * 60
K2 = "81be" + "2" * 60

runner = CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    cache = ConceptCache(root)
    cache.put(
        K1,
        "concept",
        {"embeddings": {"<cat>": torch.randn(8)}, "kv": {"w": torch.randn(4, 8)}},
        {"scene": "catscene", "objects": ["cat", "pot"], "model": "builtin:shapes-tiny"},
    )
    cache.put(K2, "inversion", {"latents": {"z": torch.randn(3, 4, 8, 8)}}, {"scene": "catscene"})
    return root


def run(root: Path, *args: str) -> Result:
    return runner.invoke(app, ["--cache-dir", str(root), *args])


def test_ls_shows_a_table_and_json(root: Path) -> None:
    out = run(root, "cache", "ls")
    assert out.exit_code == 0, out.output
    for text in (K1[:12], K2[:12], "concept", "inversion", "catscene", "cat, pot"):
        assert text in out.output
    wide = runner.invoke(app, ["--cache-dir", str(root), "cache", "ls"], env={"COLUMNS": "120"})
    assert "builtin:shapes-tiny" in wide.output and "created" in wide.output
    data = json.loads(run(root, "--json", "cache", "ls").stdout)
    assert {d["key"] for d in data} == {K1, K2}
    only = json.loads(run(root, "--json", "cache", "ls", "--kind", "inversion").stdout)
    assert [d["key"] for d in only] == [K2]


def test_ls_of_an_empty_cache(tmp_path: Path) -> None:
    out = run(tmp_path / "empty", "cache", "ls")
    assert out.exit_code == 0 and "no cache entries" in out.output


def test_show_by_prefix(root: Path) -> None:
    out = run(root, "cache", "show", "3fa")
    assert out.exit_code == 0, out.output
    assert K1 in out.output and "<cat>" in out.output and "[4, 8]" in out.output
    data = json.loads(run(root, "--json", "cache", "show", "81b").stdout)
    assert data["tensors"]["latents"]["z"] == {"dtype": "F32", "shape": [3, 4, 8, 8]}


@pytest.mark.parametrize("prefix", ["zz", "99", ""])
def test_a_bad_key_is_one_line_and_exit_2(root: Path, prefix: str) -> None:
    out = run(root, "cache", "show", prefix)
    assert out.exit_code == 2
    assert out.stderr.count("\n") == 1 and "error:" in out.stderr
    assert "Traceback" not in out.output


def test_rm_checks_every_key_before_removing_any(root: Path) -> None:
    out = run(root, "cache", "rm", "3fa", "nope")
    assert out.exit_code == 2
    assert ConceptCache(root).all_keys() == sorted([K1, K2])
    out = run(root, "cache", "rm", "3fa", "81be")
    assert out.exit_code == 0 and ConceptCache(root).all_keys() == []


@pytest.mark.parametrize(
    "args", [["--older-than", "30"], ["--older-than", "soon"], ["--max-size", "5 parsecs"]]
)
def test_prune_rejects_bad_values(root: Path, args: list[str]) -> None:
    out = run(root, "cache", "prune", *args)
    assert out.exit_code == 2 and "bad" in out.stderr
    assert len(ConceptCache(root).all_keys()) == 2


def test_prune_by_size(root: Path) -> None:
    out = run(root, "cache", "prune", "--max-size", "1B", "--dry-run")
    assert out.exit_code == 0 and "would remove 2" in out.output
    assert len(ConceptCache(root).all_keys()) == 2
    out = run(root, "--json", "cache", "prune", "--older-than", "1d", "--max-size", "5GB")
    assert json.loads(out.stdout)["removed"] == []
    out = run(root, "cache", "prune", "--max-size", "1B")
    assert out.exit_code == 0 and ConceptCache(root).all_keys() == []


def test_verify_exits_1_until_fixed(root: Path) -> None:
    assert run(root, "cache", "verify").exit_code == 0
    (root / "artifacts" / K1 / "kv.safetensors").write_bytes(b"garbage")
    out = run(root, "cache", "verify")
    assert out.exit_code == 1 and K1[:12] in out.stderr and "truncated" in out.stderr
    out = run(root, "cache", "verify", "--fix")
    assert out.exit_code == 0 and "evicted" in out.stderr
    assert run(root, "cache", "verify").exit_code == 0
    assert ConceptCache(root).all_keys() == [K2]


def test_path(root: Path) -> None:
    out = run(root, "cache", "path")
    assert out.exit_code == 0 and out.stdout.strip() == str(root)


@pytest.mark.parametrize("suffix", [".tar", ".safetensors"])
def test_export_and_import(root: Path, tmp_path: Path, suffix: str) -> None:
    file = tmp_path / f"scene{suffix}"
    assert run(root, "cache", "export", "3fa9", str(file)).exit_code == 0
    other = tmp_path / "other"
    out = run(other, "cache", "import", str(file))
    assert out.exit_code == 0 and "imported" in out.output
    entry = ConceptCache(other).get(K1)
    original = ConceptCache(root).get(K1)
    assert entry is not None and original is not None
    assert entry.meta == original.meta
    assert torch.equal(entry.tensors("kv")["w"], original.tensors("kv")["w"])
    assert "already" in run(other, "cache", "import", str(file)).output
    bad = run(other, "cache", "import", str(tmp_path / "x.zip"))
    assert bad.exit_code == 2


def test_every_command_has_help_with_an_example() -> None:
    for command in ("ls", "show", "rm", "prune", "verify", "path", "export", "import"):
        out = runner.invoke(app, ["cache", command, "--help"])
        assert out.exit_code == 0 and "Example:" in out.output, command
