"""Resume across processes, stalls and dropped connections, damage on disk, progress, and secrecy.

Kill, progress and log tests run the real `lpbyoc-worker prefetch` program in a child process.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
from lpbyoc_worker.prefetch.progress import Progress
from lpbyoc_worker.prefetch.snapshot import PrefetchRequest, prefetch
from lpbyoc_worker.prefetch.transfer import ETAG_SUFFIX
from lpbyoc_worker.weights import MARKER_NAME, SnapshotError, find_snapshot, partial_dir, snapshot_dir, verify
from prometheus_client.parser import text_string_to_metric_families

from tests.support.hub_server import FakeHub, PatternBlob, free_port, wait_until

from .conftest import REPO, spawn_prefetch

MIB = 1024 * 1024


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else -1


def test_a_killed_prefetch_resumes_and_fetches_only_the_rest(
    hub: FakeHub, cache: Path, tmp_path: Path
) -> None:
    size, cut_at = 8 * MIB, 3 * MIB
    sha = hub.add_repo(REPO, {"big.bin": PatternBlob(size), "config.json": b"{}"})
    hub.stall(REPO, "big.bin", after_bytes=cut_at, seconds=60)
    part = partial_dir(cache, REPO, sha) / "big.bin"

    first = spawn_prefetch(hub, cache, tmp_path / "t1", "--parallel", "1")
    try:
        wait_until(lambda: _size(part) == cut_at, timeout=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
    assert not (snapshot_dir(cache, REPO, sha) / MARKER_NAME).exists()
    hub.reset_counters()

    second = spawn_prefetch(hub, cache, tmp_path / "t2", "--parallel", "1")
    out, err = second.communicate(timeout=60)

    assert second.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["reason"] == "Succeeded" and result["bytesDownloaded"] == size - cut_at + len(b"{}")
    assert hub.served(REPO, "big.bin") == size - cut_at
    resumed = [r for r in hub.requests if r.method == "GET" and r.path.endswith("/big.bin")]
    assert [r.range for r in resumed] == [f"bytes={cut_at}-"]
    assert verify(cache, REPO, sha, check_hash=True) == []
    assert not partial_dir(cache, REPO, sha).exists()


def test_a_partial_file_from_another_etag_is_not_resumed_onto(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    size = 2 * MIB
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size)})
    part = partial_dir(cache, REPO, sha) / "w.bin"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * MIB)
    part.with_name("w.bin" + ETAG_SUFFIX).write_text("some-other-etag")

    outcome = run_prefetch()

    assert outcome.code == 0
    assert hub.served(REPO, "w.bin") == size
    assert verify(cache, REPO, sha, check_hash=True) == []


def test_a_stalled_transfer_is_retried_and_resumes(hub: FakeHub, cache: Path, run_prefetch) -> None:
    size = 3 * MIB
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size)})
    hub.stall(REPO, "w.bin", after_bytes=MIB, seconds=20)

    outcome = run_prefetch("--stall-timeout", "0.5")

    assert outcome.code == 0, outcome.stderr
    gets = [r for r in hub.requests if r.method == "GET" and r.path.endswith("/w.bin")]
    assert [g.range for g in gets] == [None, f"bytes={MIB}-"]
    assert verify(cache, REPO, sha, check_hash=True) == []


def test_a_dropped_connection_is_resumed(hub: FakeHub, cache: Path, run_prefetch) -> None:
    size = 3 * MIB
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size)})
    hub.cut(REPO, "w.bin", after_bytes=MIB + 123, times=2)

    outcome = run_prefetch()

    assert outcome.code == 0, outcome.stderr
    assert hub.served(REPO, "w.bin") == size
    assert verify(cache, REPO, sha, check_hash=True) == []


def test_a_corrupted_file_in_a_complete_snapshot_is_detected_and_fetched_again(
    hub: FakeHub, cache: Path, run_prefetch, model_files
) -> None:
    sha = hub.add_repo(REPO, model_files)
    assert run_prefetch().code == 0
    root = snapshot_dir(cache, REPO, sha)
    shard = "shards/shard-00001-of-00003.bin"
    data = bytearray((root / shard).read_bytes())
    data[1000] ^= 0xFF  # same size: only a hash check sees it
    (root / shard).write_bytes(bytes(data))

    assert find_snapshot(cache, REPO, sha) == root  # the cheap (size) check cannot tell
    try:
        find_snapshot(cache, REPO, sha, check_hash=True)
        raise AssertionError("the hash check should refuse the damaged snapshot")
    except SnapshotError as exc:
        assert shard in str(exc)

    hub.reset_counters()
    repaired = run_prefetch("--verify")

    assert repaired.code == 0
    assert hub.served(REPO) == hub.served(REPO, shard) == hub.file(REPO, shard).content.size
    assert find_snapshot(cache, REPO, sha, check_hash=True) == root


def test_a_truncated_file_is_caught_without_verify(
    hub: FakeHub, cache: Path, run_prefetch, model_files
) -> None:
    sha = hub.add_repo(REPO, model_files)
    assert run_prefetch().code == 0
    root = snapshot_dir(cache, REPO, sha)
    (root / "model.pt").write_bytes(b"trunc")
    assert verify(cache, REPO, sha, check_hash=False) == [
        f"model.pt: size 5 != {hub.file(REPO, 'model.pt').content.size}"
    ]
    hub.reset_counters()

    assert run_prefetch().code == 0
    assert hub.served(REPO) == hub.file(REPO, "model.pt").content.size
    assert find_snapshot(cache, REPO, sha, check_hash=True) == root


def test_progress_endpoint_reports_while_downloading(hub: FakeHub, cache: Path, tmp_path: Path) -> None:
    size, stall_at = 4 * MIB, MIB
    hub.add_repo(REPO, {"big.bin": PatternBlob(size), "config.json": b"{}"})
    hub.stall(REPO, "big.bin", after_bytes=stall_at, seconds=60)
    port = free_port()
    proc = spawn_prefetch(
        hub,
        cache,
        tmp_path / "t",
        "--progress-port",
        str(port),
        "--stall-timeout",
        "30",
        "--log-interval",
        "0.1",
    )
    url = f"http://127.0.0.1:{port}"

    def progress() -> dict:
        try:
            return httpx.get(f"{url}/progress", timeout=2).json()
        except httpx.HTTPError:
            return {}

    try:
        wait_until(lambda: progress().get("bytesDone", 0) >= stall_at + 2, timeout=30)
        seen = progress()
        metrics = httpx.get(f"{url}/metrics", timeout=2).text
        time.sleep(0.5)  # several --log-interval periods while still downloading
    finally:
        hub.release_stalls()
        out, err = proc.communicate(timeout=60)

    assert seen["state"] == "downloading"
    assert seen["bytesTotal"] == size + 2 and seen["filesTotal"] == 2
    assert stall_at < seen["bytesDone"] < seen["bytesTotal"]
    assert seen["filesDone"] <= 1
    assert seen["rateBytesPerSecond"] > 0
    assert seen["etaSeconds"] is None or seen["etaSeconds"] > 0
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples[("lpbyoc_prefetch_bytes_total", ())] == size + 2
    assert samples[("lpbyoc_prefetch_bytes_done", ())] > stall_at
    assert samples[("lpbyoc_prefetch_state", (("state", "downloading"),))] == 1.0
    assert samples[("lpbyoc_prefetch_state", (("state", "done"),))] == 0.0
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["reason"] == "Succeeded"
    assert f"of {size + 2} bytes, " in err  # the periodic log line for `kubectl logs`


def test_the_token_never_appears_in_output_logs_or_the_result(
    hub: FakeHub, cache: Path, tmp_path: Path
) -> None:
    token = "hf_ZZsecretTOKEN987"
    hub.add_repo(REPO, {"w.bin": PatternBlob(MIB), "config.json": b"{}"}, token=token)
    hub.fail(REPO, "w.bin", status=503, times=1)  # a retry makes the program log about the transfer

    ok = spawn_prefetch(hub, cache, tmp_path / "ok", token=token)
    ok_out, ok_err = ok.communicate(timeout=60)
    bad = spawn_prefetch(hub, cache, tmp_path / "bad", repo=REPO, revision="nope", token=token)
    bad_out, bad_err = bad.communicate(timeout=60)

    assert ok.returncode == 0 and bad.returncode == 1
    assert "retry 1/" in ok_err
    assert all(r.authorization for r in hub.requests)
    for text in (
        ok_out,
        ok_err,
        bad_out,
        bad_err,
        (tmp_path / "ok").read_text(),
        (tmp_path / "bad").read_text(),
    ):
        assert token not in text


def test_lfs_bytes_from_a_cdn_host_resume_there_without_the_token(
    hub: FakeHub, cache: Path, run_prefetch
) -> None:
    """As on the Hub, LFS files redirect to a CDN host with ETags of its own."""
    token = "hf_cdnTOKEN"
    size = 3 * MIB
    hub.cdn_redirect = True
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size), "config.json": b"{}"}, token=token)
    hub.cut(REPO, "w.bin", after_bytes=MIB, times=1)

    outcome = run_prefetch(token=token)

    assert outcome.code == 0, outcome.stderr
    cdn = [r for r in hub.requests if r.path.startswith("/cdn/")]
    assert [r.range for r in cdn] == [None, f"bytes={MIB}-"]  # resumed on the CDN, not restarted
    assert not any(r.authorization for r in cdn)
    assert all(r.authorization for r in hub.requests if not r.path.startswith("/cdn/"))
    assert hub.served(REPO, "w.bin") == size
    assert verify(cache, REPO, sha, check_hash=True) == []


def test_two_runs_for_the_same_commit_at_once_download_it_once(hub: FakeHub, cache: Path) -> None:
    """A branch and its sha (two Jobs) racing on one volume: the second waits for the first's lock."""
    size = 2 * MIB
    sha = hub.add_repo(REPO, {"w.bin": PatternBlob(size), "config.json": b"{}"})
    hub.stall(REPO, "w.bin", after_bytes=MIB, seconds=30)
    results: dict[str, object] = {}

    def run(revision: str) -> None:
        request = PrefetchRequest(repo=REPO, revision=revision, cache_dir=cache, endpoint=hub.url)
        results[revision] = prefetch(request, Progress())

    first = threading.Thread(target=run, args=("main",))
    first.start()
    wait_until(lambda: hub.served(REPO, "w.bin") >= MIB)
    second = threading.Thread(target=run, args=(sha,))
    second.start()
    wait_until(lambda: sum(r.path.endswith(f"/revision/{sha}") for r in hub.requests) == 1)
    time.sleep(0.3)  # room for the second run to (wrongly) start its own download
    assert [r.range for r in hub.requests if r.method == "GET" and r.path.endswith("/w.bin")] == [None]
    hub.release_stalls()
    first.join(30)
    second.join(30)

    assert hub.served(REPO, "w.bin") == size
    assert results["main"].bytes_downloaded == size + 2 and results[sha].bytes_downloaded == 0
    assert verify(cache, REPO, sha, check_hash=True) == []
