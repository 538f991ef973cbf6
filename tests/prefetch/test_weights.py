"""The cache layout and marker functions the worker and the prefetcher share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lpbyoc_worker.weights import (
    MARKER_NAME,
    ManifestEntry,
    Marker,
    SnapshotError,
    find_snapshot,
    partial_dir,
    repo_dirname,
    snapshot_dir,
    verify,
    write_marker,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_layout_follows_the_contract(tmp_path: Path) -> None:
    assert repo_dirname("acme/tiny") == "acme--tiny"
    assert repo_dirname("gpt2") == "gpt2"
    assert snapshot_dir(tmp_path, "acme/tiny", SHA) == tmp_path / "models" / "acme--tiny" / SHA
    assert partial_dir(tmp_path, "gpt2", SHA) == tmp_path / ".partial" / "gpt2" / SHA
    for bad in ("", "a/b/c", "/x", "../x", "a/.."):
        with pytest.raises(SnapshotError):
            repo_dirname(bad)


def test_marker_is_written_whole_with_the_contract_keys(tmp_path: Path) -> None:
    root = snapshot_dir(tmp_path, "acme/tiny", SHA)
    root.mkdir(parents=True)
    (root / "a.bin").write_bytes(b"abc")
    entry = ManifestEntry("a.bin", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    write_marker(tmp_path, Marker("acme/tiny", "main", SHA, (entry,), "2026-01-01T00:00:00Z"))

    assert sorted(p.name for p in root.iterdir()) == sorted(["a.bin", MARKER_NAME])  # no temp file left
    data = json.loads((root / MARKER_NAME).read_text())
    assert set(data) == {"repo", "revision", "sha", "files", "completedAt"}
    assert data["files"] == [{"path": "a.bin", "size": 3, "sha256": entry.sha256}]
    assert find_snapshot(tmp_path, "acme/tiny", SHA, check_hash=True) == root

    (root / "a.bin").write_bytes(b"abd")
    assert verify(tmp_path, "acme/tiny", SHA, check_hash=False) == []
    assert verify(tmp_path, "acme/tiny", SHA) == ["a.bin: sha256 mismatch"]
    assert verify(tmp_path, "acme/tiny", SHA, paths=["other"]) == []


def test_a_marker_for_another_commit_is_refused(tmp_path: Path) -> None:
    root = snapshot_dir(tmp_path, "acme/tiny", SHA)
    root.mkdir(parents=True)
    other = "f" * 40
    (root / MARKER_NAME).write_text(
        json.dumps({"repo": "acme/tiny", "revision": "main", "sha": other, "files": [], "completedAt": "x"})
    )
    with pytest.raises(SnapshotError, match=r"is for acme/tiny@f+, not"):
        find_snapshot(tmp_path, "acme/tiny", SHA)
