"""Failures end with the contract's reason in the result JSON, exit code 1 and no marker."""

from __future__ import annotations

import errno
import io
import shutil
import threading
from pathlib import Path

import pytest
from lpbyoc_worker import cli
from lpbyoc_worker.prefetch import snapshot, transfer
from lpbyoc_worker.prefetch.plan import RemoteFile
from lpbyoc_worker.prefetch.progress import Progress
from lpbyoc_worker.prefetch.result import PrefetchError
from lpbyoc_worker.prefetch.transfer import FileFetcher, TransferSettings
from lpbyoc_worker.prefetch.transport import Transport
from lpbyoc_worker.weights import MARKER_NAME, partial_dir, repo_dirname, snapshot_dir

from tests.support.hub_server import FakeHub, PatternBlob

from .conftest import REPO, prefetch_args, tmpfs

TOKEN = "hf_secretTOKENvalue123"


def assert_failed(outcome, reason: str, cache: Path, repo: str = REPO) -> None:
    assert outcome.code == 1, outcome.stderr
    assert outcome.result["result"] == "Failed"
    assert outcome.result["reason"] == reason, outcome.result
    assert outcome.result["message"]
    assert not list(cache.glob(f"models/{repo_dirname(repo)}/*/{MARKER_NAME}"))


def test_private_repo_needs_the_right_token(hub: FakeHub, cache: Path, run_prefetch) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"}, token=TOKEN)

    assert_failed(run_prefetch(), "Unauthorized", cache)
    wrong = run_prefetch(token="hf_wrong")
    assert_failed(wrong, "Unauthorized", cache)
    assert "tokenSecretRef" in wrong.result["message"]

    right = run_prefetch(token=TOKEN)
    assert right.code == 0 and right.result["reason"] == "Succeeded"
    assert all(TOKEN not in text for text in (right.stdout, right.stderr, right.termination))


def test_unknown_repo_and_unknown_revision(hub: FakeHub, cache: Path, run_prefetch) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"})

    missing_repo = run_prefetch(repo="acme/missing")
    assert_failed(missing_repo, "RepoNotFound", cache)
    assert "acme/missing" in missing_repo.result["message"]

    missing_rev = run_prefetch(revision="no-such-branch")
    assert_failed(missing_rev, "RevisionNotFound", cache)
    assert "no-such-branch" in missing_rev.result["message"]
    assert missing_rev.result["sha"] is None


def test_corrupt_bytes_from_the_server_are_fetched_again_once(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    size = 400_000
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size), "config.json": b"{}"})
    hub.corrupt(REPO, "w.bin", times=1)

    outcome = run_prefetch()

    assert outcome.code == 0
    assert hub.served(REPO, "w.bin") == 2 * size
    assert (snapshot_dir(cache, REPO, sha) / "w.bin").read_bytes() == bytes(
        hub.file(REPO, "w.bin").content.read(0, size)
    )


def test_corrupt_bytes_twice_is_a_checksum_mismatch(hub: FakeHub, cache: Path, run_prefetch) -> None:
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(300_000), "config.json": b"{}"})
    hub.corrupt(REPO, "w.bin", times=None)

    outcome = run_prefetch()

    assert_failed(outcome, "ChecksumMismatch", cache)
    assert "w.bin" in outcome.result["message"]
    assert not (partial_dir(cache, REPO, sha) / "w.bin").exists()


def test_non_lfs_files_are_checked_against_the_git_blob_id(hub: FakeHub, cache: Path, run_prefetch) -> None:
    hub.add_repo(REPO, {"config.json": b'{"a": 1}'})
    assert hub.file(REPO, "config.json").lfs is False
    hub.corrupt(REPO, "config.json", times=None)

    assert_failed(run_prefetch(), "ChecksumMismatch", cache)


def test_a_stall_that_never_ends_is_download_stalled_after_the_retry_budget(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    hub.add_repo(REPO, {"w.bin": PatternBlob(200_000)})
    hub.stall(REPO, "w.bin", after_bytes=0, seconds=30, times=None)

    outcome = run_prefetch("--stall-timeout", "0.3", "--max-retries", "2")

    assert_failed(outcome, "DownloadStalled", cache)
    gets = [r for r in hub.requests if r.method == "GET" and r.path.endswith("/w.bin")]
    assert len(gets) == 3  # the first try and two retries
    assert "0.3s" in outcome.result["message"]


def test_server_errors_are_retried_then_reported_as_network_error(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    hub.add_repo(REPO, {"w.bin": PatternBlob(100_000)})
    hub.fail(REPO, "w.bin", status=503, times=2)
    assert run_prefetch("--max-retries", "3").code == 0

    hub.add_repo("acme/other", {"w.bin": PatternBlob(100_000)})
    hub.fail("acme/other", "w.bin", status=503, times=None)
    assert_failed(run_prefetch("--max-retries", "1", repo="acme/other"), "NetworkError", cache, "acme/other")


SMALL_VOLUME_BYTES = 2 * 1024 * 1024


class _SizeLimitedFile(io.FileIO):
    """Stands in for a full volume where no tmpfs can be mounted: ENOSPC past the size limit."""

    def write(self, data) -> int:  # type: ignore[no-untyped-def]
        if self.tell() + len(data) > SMALL_VOLUME_BYTES:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


@pytest.fixture
def small_volume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 2 MiB volume: a real tmpfs (root), else a mock of a full disk (free space and ENOSPC on write)."""
    path = tmp_path / "small"
    with tmpfs(path, "2m") as mounted:
        if not mounted:
            usage = shutil.disk_usage(tmp_path)._replace(free=SMALL_VOLUME_BYTES)
            monkeypatch.setattr(snapshot.shutil, "disk_usage", lambda _: usage)
            monkeypatch.setattr(
                transfer,
                "open",
                lambda f, mode, buffering=-1: _SizeLimitedFile(f, mode.replace("b", "")),
                raising=False,
            )
        yield path


def test_disk_full_before_download_keeps_no_marker(hub: FakeHub, small_volume: Path, monkeypatch) -> None:
    """A 2 MiB tmpfs as the cache volume, a 3 MiB repo: refused up front with DiskFull."""
    hub.add_repo(REPO, {f"w{i}.bin": PatternBlob(1024 * 1024, seed=i) for i in range(3)})
    term = small_volume / "t.log"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    code = cli.main(prefetch_args(small_volume, REPO, "main", term))
    assert code == 1
    assert '"reason": "DiskFull"' in term.read_text()
    assert "bytes free" in term.read_text()
    assert not list(small_volume.glob(f"models/*/*/{MARKER_NAME}"))
    assert hub.served(REPO) == 0


def test_disk_full_while_writing_is_disk_full_and_keeps_the_partial_file(
    hub: FakeHub, small_volume: Path
) -> None:
    """The free-space preflight is bypassed by calling the transfer directly, so the write itself hits ENOSPC."""
    size = 3 * 1024 * 1024
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size)})
    served = hub.file(REPO, "w.bin")
    remote = RemoteFile("w.bin", size, served.sha256, None)
    partial = partial_dir(small_volume, REPO, sha)
    transport = Transport(timeout=10)
    try:
        fetcher = FileFetcher(
            transport=transport,
            endpoint=hub.url,
            token=None,
            repo=REPO,
            sha=sha,
            partial_root=partial,
            settings=TransferSettings(stall_timeout=5, max_retries=0),
            progress=Progress(),
            abort=threading.Event(),
        )
        with pytest.raises(PrefetchError) as failure:
            fetcher.fetch(remote)
    finally:
        transport.close()
    assert failure.value.reason == "DiskFull"
    kept = (partial / "w.bin").stat().st_size
    assert 1024 * 1024 < kept < size  # what fitted stays, ready to resume on a larger volume


def test_a_malformed_repo_id_is_refused_before_any_request(hub: FakeHub, cache: Path, run_prefetch) -> None:
    for bad in ("../../etc", "a/b/c", "acme/"):
        outcome = run_prefetch(repo=bad)
        assert outcome.code == 1 and outcome.result["reason"] == "RepoNotFound", outcome.result
        assert "invalid repo id" in outcome.result["message"]
    assert hub.requests == []
    assert not (cache / "models").exists()


def test_hub_errors_while_resolving_are_retried(hub: FakeHub, cache: Path, run_prefetch) -> None:
    hub.add_repo(REPO, {"config.json": b"{}"})
    hub.fail_api(REPO, status=502, times=2)
    assert run_prefetch("--max-retries", "2").code == 0
    assert [r.status for r in hub.requests if "/revision/" in r.path] == [502, 502, 200]

    hub.fail_api(REPO, status=503, times=None)
    outcome = run_prefetch("--max-retries", "1", "--verify")
    assert outcome.code == 1 and outcome.result["reason"] == "NetworkError"
    assert "HTTP 503" in outcome.result["message"]
