"""The loopback Hub server behaves like the Hub where huggingface_hub and the prefetcher rely on it."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from lpbyoc_worker.prefetch.progress import Progress
from lpbyoc_worker.prefetch.transfer import TransferSettings

from tests.support.hub_server import FakeHub, PatternBlob, content_sha256, git_blob_oid, serve_hub

from .conftest import REPO


def test_revision_tree_and_metadata_through_the_real_client(hub: FakeHub, model_files) -> None:
    sha = hub.add_repo(REPO, model_files)
    api = HfApi(endpoint=hub.url, token=False)

    assert api.model_info(REPO, revision="main").sha == sha
    files = {f.path: f for f in api.list_repo_tree(REPO, revision=sha, recursive=True) if hasattr(f, "size")}
    assert set(files) == set(model_files)
    shard = "shards/shard-00000-of-00003.bin"
    assert files[shard].lfs is not None and files[shard].lfs.sha256 == content_sha256(model_files[shard])
    assert files["config.json"].lfs is None and files["config.json"].blob_id == git_blob_oid(
        model_files["config.json"]
    )

    meta = get_hf_file_metadata(hf_hub_url(REPO, shard, revision=sha, endpoint=hub.url), token=False)
    assert meta.commit_hash == sha and meta.etag == files[shard].lfs.sha256 and meta.size == 1024 * 1024

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("acme/none")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="nope")


def test_range_if_range_and_counters(hub: FakeHub) -> None:
    blob = PatternBlob(3 * 1024 * 1024 + 7, seed=3)
    sha = hub.add_repo(REPO, {"w.bin": blob})
    url = hf_hub_url(REPO, "w.bin", revision=sha, endpoint=hub.url)
    etag = f'"{blob.sha256()}"'
    full = httpx.get(url).content
    assert hashlib.sha256(full).hexdigest() == blob.sha256()

    ranged = httpx.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert ranged.status_code == 206
    assert ranged.headers["Content-Range"] == f"bytes 100-{blob.size - 1}/{blob.size}"
    assert ranged.content == full[100:]

    changed = httpx.get(url, headers={"Range": "bytes=100-", "If-Range": '"other"'})
    assert changed.status_code == 200 and len(changed.content) == blob.size
    assert httpx.get(url, headers={"Range": f"bytes={blob.size}-"}).status_code == 416
    assert hub.served(REPO, "w.bin") == 3 * blob.size - 100


def test_errors_carry_the_hub_error_codes() -> None:
    with serve_hub() as hub:
        hub.add_repo(REPO, {"a.txt": b"a"}, token="t0k")
        assert (
            httpx.get(f"{hub.url}/api/models/acme/none/revision/main").headers["X-Error-Code"]
            == "RepoNotFound"
        )
        assert httpx.get(f"{hub.url}/api/models/{REPO}/revision/main").status_code == 401
        auth = {"Authorization": "Bearer t0k"}
        missing_rev = httpx.get(f"{hub.url}/{REPO}/resolve/nope/a.txt", headers=auth)
        assert missing_rev.headers["X-Error-Code"] == "RevisionNotFound"
        missing_file = httpx.get(f"{hub.url}/{REPO}/resolve/main/b.txt", headers=auth)
        assert missing_file.status_code == 404 and missing_file.headers["X-Error-Code"] == "EntryNotFound"


def test_backoff_is_exponential_and_bounded() -> None:
    settings = TransferSettings(backoff_initial=1, backoff_max=10)
    assert [settings.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_progress_rate_and_eta_follow_the_clock() -> None:
    now = [100.0]
    progress = Progress(clock=lambda: now[0])
    progress.start(sha="a" * 40, bytes_total=1000, files_total=2)
    progress.add_present(100)
    progress.add_downloaded(0)
    now[0] += 2
    progress.add_downloaded(400)
    snapshot = progress.to_json()
    assert snapshot["bytesDone"] == 500 and snapshot["rateBytesPerSecond"] == 200.0
    assert snapshot["etaSeconds"] == 2.5
    now[0] += 60  # nothing for a minute: the window forgets old samples, the rate falls to zero
    assert progress.to_json()["rateBytesPerSecond"] == 0.0
