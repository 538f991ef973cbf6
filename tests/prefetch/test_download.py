"""Fresh downloads, pinning to a commit, sharing a snapshot, patterns, and the worker's marker check.

Everything goes through the real `huggingface_hub` client against the loopback Hub server.
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from lpbyoc_worker import cli
from lpbyoc_worker.weights import (
    MARKER_NAME,
    SnapshotError,
    find_snapshot,
    partial_dir,
    read_marker,
    snapshot_dir,
    verify,
)

from tests.support.hub_server import FakeHub, PatternBlob, content_sha256

from .conftest import REPO, prefetch_args


def test_fresh_download_writes_files_and_a_manifest_with_the_hub_checksums(
    hub: FakeHub, cache: Path, run_prefetch, model_files
) -> None:
    sha = hub.add_repo(REPO, model_files)

    outcome = run_prefetch()

    assert outcome.code == 0
    assert outcome.result["result"] == "Succeeded" and outcome.result["reason"] == "Succeeded"
    assert outcome.result["sha"] == sha
    assert outcome.result["files"] == len(model_files)
    total = sum(hub.file(REPO, p).content.size for p in model_files)
    assert outcome.result["bytes"] == total == outcome.result["bytesDownloaded"]
    assert json.loads(outcome.termination) == outcome.result

    root = snapshot_dir(cache, REPO, sha)
    assert root == cache / "models" / "acme--tiny" / sha
    marker = read_marker(cache, REPO, sha)
    assert marker.revision == "main"
    assert [e.path for e in marker.files] == sorted(model_files)
    for entry in marker.files:
        served = hub.file(REPO, entry.path)
        on_disk = (root / entry.path).read_bytes()
        assert entry.size == len(on_disk) == served.content.size
        assert entry.sha256 == hashlib.sha256(on_disk).hexdigest() == content_sha256(served.content)
    assert find_snapshot(cache, REPO, sha, check_hash=True) == root
    assert not partial_dir(cache, REPO, sha).exists()


def test_branch_and_tag_resolve_to_the_commit_sha_directory(hub: FakeHub, cache: Path, run_prefetch) -> None:
    sha = hub.add_repo(REPO, {"config.json": b"{}", "w.bin": PatternBlob(300_000)})
    hub.tag(REPO, "v1.0", sha)

    by_tag = run_prefetch(revision="v1.0")
    assert by_tag.code == 0 and by_tag.result["sha"] == sha
    assert read_marker(cache, REPO, sha).revision == "v1.0"
    assert [p.name for p in (cache / "models" / "acme--tiny").iterdir()] == [sha]

    by_sha = run_prefetch(revision=sha)
    assert by_sha.code == 0 and by_sha.result["bytesDownloaded"] == 0


def test_a_moved_branch_is_a_new_directory_and_the_old_snapshot_stays(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    old = hub.add_repo(REPO, {"config.json": b'{"v": 1}', "w.bin": PatternBlob(200_000, seed=1)})
    assert run_prefetch().result["sha"] == old
    old_manifest = (snapshot_dir(cache, REPO, old) / MARKER_NAME).read_bytes()

    new = hub.commit(REPO, {"config.json": b'{"v": 2}', "w.bin": PatternBlob(200_000, seed=2)})
    hub.reset_counters()
    outcome = run_prefetch()

    assert outcome.code == 0 and outcome.result["sha"] == new != old
    assert hub.served(REPO) == 200_000 + len(b'{"v": 2}')
    assert (snapshot_dir(cache, REPO, new) / "config.json").read_bytes() == b'{"v": 2}'
    assert (snapshot_dir(cache, REPO, old) / "config.json").read_bytes() == b'{"v": 1}'
    assert (snapshot_dir(cache, REPO, old) / MARKER_NAME).read_bytes() == old_manifest
    assert verify(cache, REPO, old) == [] and verify(cache, REPO, new) == []


def test_a_second_request_for_the_same_weights_downloads_nothing(
    hub: FakeHub, cache: Path, run_prefetch, model_files
) -> None:
    sha = hub.add_repo(REPO, model_files)
    assert run_prefetch().code == 0
    marker_before = (snapshot_dir(cache, REPO, sha) / MARKER_NAME).read_bytes()
    hub.reset_counters()

    again = run_prefetch()

    assert again.code == 0 and again.result["sha"] == sha
    assert again.result["bytesDownloaded"] == 0
    assert hub.served(REPO) == 0
    assert not [r for r in hub.requests if "/resolve/" in r.path]
    assert (snapshot_dir(cache, REPO, sha) / MARKER_NAME).read_bytes() == marker_before


def test_allow_and_ignore_patterns_and_a_later_request_with_other_patterns(
    hub: FakeHub, cache: Path, run_prefetch, model_files
) -> None:
    sha = hub.add_repo(REPO, model_files)

    first = run_prefetch("--allow", "*.json", "--allow", "*.pt")
    assert first.code == 0 and first.result["files"] == 2
    assert sorted(e.path for e in read_marker(cache, REPO, sha).files) == ["config.json", "model.pt"]

    hub.reset_counters()
    second = run_prefetch("--ignore", "*.md")
    assert second.code == 0 and second.result["files"] == len(model_files) - 1
    shards = [p for p in model_files if p.startswith("shards/")]
    assert hub.served(REPO) == sum(hub.file(REPO, p).content.size for p in shards)
    manifest = sorted(e.path for e in read_marker(cache, REPO, sha).files)
    assert manifest == sorted(p for p in model_files if p != "README.md")

    nothing = run_prefetch("--allow", "*.nothing")
    assert nothing.code == 1 and nothing.result["reason"] == "EntryNotFound"


def test_the_worker_refuses_a_snapshot_without_a_valid_marker(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    sha = hub.add_repo(REPO, {"config.json": b"{}", "w.bin": PatternBlob(100_000)})
    root = snapshot_dir(cache, REPO, sha)
    root.mkdir(parents=True)
    (root / "config.json").write_bytes(b"{}")
    with pytest.raises(SnapshotError, match=r"marker .* is missing"):
        find_snapshot(cache, REPO, sha)

    (root / MARKER_NAME).write_text("{not json")
    with pytest.raises(SnapshotError, match="not valid JSON"):
        find_snapshot(cache, REPO, sha)

    (root / MARKER_NAME).write_text(json.dumps({"repo": REPO, "sha": sha}))
    with pytest.raises(SnapshotError, match="malformed"):
        find_snapshot(cache, REPO, sha)

    (root / MARKER_NAME).unlink()
    assert run_prefetch().code == 0
    assert find_snapshot(cache, REPO, sha) == root
    with pytest.raises(SnapshotError, match="invalid commit sha"):
        find_snapshot(cache, REPO, "main")
    with pytest.raises(SnapshotError, match="invalid repo id"):
        find_snapshot(cache, "../etc", sha)


def test_empty_files_and_unusual_names(hub: FakeHub, cache: Path, run_prefetch) -> None:
    files = {
        ".gitattributes": b"",
        "dir with space/ü-config.json": b'{"ok": true}',
        "deep/a/b/c.bin": PatternBlob(4096),
    }
    sha = hub.add_repo(REPO, files)

    outcome = run_prefetch()

    assert outcome.code == 0, outcome.stderr
    root = snapshot_dir(cache, REPO, sha)
    assert (root / ".gitattributes").read_bytes() == b""
    assert (root / "dir with space" / "ü-config.json").read_bytes() == b'{"ok": true}'
    assert (root / "deep/a/b/c.bin").stat().st_size == 4096
    entries = {e.path: e for e in read_marker(cache, REPO, sha).files}
    assert entries[".gitattributes"].sha256 == hashlib.sha256(b"").hexdigest()
    assert verify(cache, REPO, sha, check_hash=True) == []


def test_a_busy_progress_port_does_not_stop_the_download(
    hub: FakeHub, cache: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = prefetch_args(cache, REPO, "main", tmp_path / "t")
        args[args.index("--progress-port") + 1] = str(port)
        assert cli.main(args) == 0
    assert "cannot serve progress" in caplog.text
