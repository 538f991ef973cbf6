"""A small Hugging Face Hub-compatible HTTP server on loopback, for tests and benchmarks.

It serves only the endpoints `huggingface_hub` calls to resolve a revision, list a tree and
fetch files, with the headers the client relies on (`X-Repo-Commit`, `ETag`, `X-Linked-Etag`,
`X-Linked-Size`, `Content-Length`, Range → 206 + `Content-Range`, 404 + `X-Error-Code`), and a
few fault-injection knobs (stall, cut, corrupt, HTTP errors) plus per-file byte counters.

Use it in pytest through the `hub` fixture (tests/prefetch/conftest.py), or anywhere with:

    with serve_hub() as hub:
        sha = hub.add_repo("acme/tiny", tiny_model_files())
        os.environ["HF_ENDPOINT"] = hub.url

File contents are `bytes` or a `PatternBlob` (a large file generated from a repeating random
block, so a 1 GB file costs 1 MB of memory and no disk).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".onnx", ".plan", ".gguf")
LFS_MIN_SIZE = 1024 * 1024
API_FAULT_KEY = "@api"  # fault key for a repo's revision-info endpoint (not a file path)
_SEND_CHUNK = 1024 * 1024
_FLIP = bytes(255 - i for i in range(256))


class Content(Protocol):
    """What a served file is: a size and random access to its bytes."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes | memoryview: ...


class PatternBlob:
    """`size` bytes made of one random block repeated; cheap at any size, deterministic per seed."""

    def __init__(self, size: int, *, seed: int = 0, block: int = 1024 * 1024) -> None:
        self._size = size
        pattern = hashlib.shake_256(f"pattern-{seed}".encode()).digest(block)
        self._period = block
        self._doubled = memoryview(pattern + pattern)
        self._sha256: str | None = None

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> memoryview:
        length = max(0, min(length, self._size - offset, self._period))
        start = offset % self._period
        return self._doubled[start : start + length]

    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = content_sha256(self)
        return self._sha256


class BytesContent:
    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


def content_sha256(content: Content) -> str:
    digest = hashlib.sha256()
    offset = 0
    while offset < content.size:
        chunk = content.read(offset, _SEND_CHUNK)
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def git_blob_oid(data: bytes) -> str:
    """The git object id of a blob, which the Hub reports as `oid` for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _as_content(value: bytes | Content) -> Content:
    return BytesContent(value) if isinstance(value, bytes | bytearray) else value


@dataclass
class ServedFile:
    path: str
    content: Content
    lfs: bool
    sha256: str
    oid: str  # git blob id (of the LFS pointer for LFS files)

    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    def tree_entry(self) -> dict[str, object]:
        entry: dict[str, object] = {
            "type": "file",
            "oid": self.oid,
            "size": self.content.size,
            "path": self.path,
        }
        if self.lfs:
            pointer = self._pointer()
            entry["lfs"] = {"oid": self.sha256, "size": self.content.size, "pointerSize": len(pointer)}
        return entry

    def _pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.content.size}\n"
        ).encode()

    @classmethod
    def build(cls, path: str, value: bytes | Content, *, lfs: bool | None = None) -> ServedFile:
        content = _as_content(value)
        if lfs is None:
            lfs = content.size >= LFS_MIN_SIZE or path.endswith(LFS_SUFFIXES)
        sha256 = value.sha256() if isinstance(value, PatternBlob) else content_sha256(content)
        if lfs:
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {content.size}\n"
            ).encode()
            oid = git_blob_oid(pointer)
        else:
            oid = git_blob_oid(bytes(content.read(0, content.size)))
        return cls(path=path, content=content, lfs=lfs, sha256=sha256, oid=oid)


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, dict[str, ServedFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag → sha
    token: str | None = None  # private repo: only this Bearer token may read it
    # Extra fields of the model-info answer, as the Hub sends them: `library_name`, `pipeline_tag`,
    # `cardData` ({"library_name", "pipeline_tag", ...} from the README's front matter), `tags`.
    info: dict[str, object] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


@dataclass
class Fault:
    """One injected misbehaviour for one file; `times=None` means every request."""

    kind: str  # "stall" | "cut" | "corrupt" | "status"
    after_bytes: int = 0
    seconds: float = 0.0
    status: int = 503
    times: int | None = 1


@dataclass
class RequestRecord:
    method: str
    path: str
    range: str | None
    authorization: bool
    status: int  # 0 until the response headers are sent


class FakeHub:
    """The server's state and knobs; thread-safe. Create it through `serve_hub()`."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.bytes_served: Counter[tuple[str, str]] = Counter()
        self.requests: list[RequestRecord] = []
        self._faults: dict[tuple[str, str], list[Fault]] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._commit_counter = 0
        self.url = ""
        # When True, LFS files answer 302 to `cdn_url` (same server, another host name), as the Hub does.
        self.cdn_redirect = False
        self.cdn_url = ""

    # ----- repos -----------------------------------------------------------------------------
    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Content],
        *,
        branch: str = "main",
        token: str | None = None,
        lfs: Mapping[str, bool] | None = None,
        info: Mapping[str, object] | None = None,
    ) -> str:
        """Create (or replace) a repo with one commit on `branch`; return the commit sha.

        `info` adds fields to the model-info answer (e.g. `{"library_name": "diffusers",
        "pipeline_tag": "text-to-image", "cardData": {...}}`).
        """
        with self._lock:
            self.repos[repo_id] = Repo(repo_id=repo_id, token=token, info=dict(info or {}))
        return self.commit(repo_id, files, branch=branch, lfs=lfs)

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Content],
        *,
        branch: str = "main",
        lfs: Mapping[str, bool] | None = None,
    ) -> str:
        """Add a commit with exactly `files` and move `branch` to it; older commits stay readable."""
        lfs = lfs or {}
        served = {path: ServedFile.build(path, value, lfs=lfs.get(path)) for path, value in files.items()}
        with self._lock:
            self._commit_counter += 1
            sha = hashlib.sha1(f"{repo_id}-{self._commit_counter}-{sorted(served)}".encode()).hexdigest()
            repo = self.repos[repo_id]
            repo.commits[sha] = served
            repo.refs[branch] = sha
        return sha

    def tag(self, repo_id: str, name: str, sha: str) -> None:
        with self._lock:
            self.repos[repo_id].refs[name] = sha

    def file(self, repo_id: str, path: str, revision: str = "main") -> ServedFile:
        repo = self.repos[repo_id]
        sha = repo.resolve(revision)
        assert sha is not None, f"unknown revision {revision}"
        return repo.commits[sha][path]

    # ----- faults and counters -----------------------------------------------------------------
    def stall(
        self, repo_id: str, path: str, *, after_bytes: int, seconds: float, times: int | None = 1
    ) -> None:
        """Send `after_bytes` of the body, then go silent for `seconds` (or until `release_stalls()`)."""
        self._add_fault(repo_id, path, Fault("stall", after_bytes=after_bytes, seconds=seconds, times=times))

    def cut(self, repo_id: str, path: str, *, after_bytes: int, times: int | None = 1) -> None:
        """Send `after_bytes` of the body, then drop the connection."""
        self._add_fault(repo_id, path, Fault("cut", after_bytes=after_bytes, times=times))

    def corrupt(self, repo_id: str, path: str, *, times: int | None = 1) -> None:
        """Serve the right length with wrong bytes (every byte flipped)."""
        self._add_fault(repo_id, path, Fault("corrupt", times=times))

    def fail(self, repo_id: str, path: str, *, status: int = 503, times: int | None = 1) -> None:
        """Answer GET of the file with an HTTP error status."""
        self._add_fault(repo_id, path, Fault("status", status=status, times=times))

    def fail_api(self, repo_id: str, *, status: int = 503, times: int | None = 1) -> None:
        """Answer the revision-info API call for the repo with an HTTP error status."""
        self._add_fault(repo_id, API_FAULT_KEY, Fault("status", status=status, times=times))

    def release_stalls(self) -> None:
        self._release.set()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()

    def served(self, repo_id: str, path: str | None = None) -> int:
        """Body bytes sent for one file, or for the whole repo when `path` is None."""
        with self._lock:
            if path is not None:
                return self.bytes_served[(repo_id, path)]
            return sum(n for (repo, _), n in self.bytes_served.items() if repo == repo_id)

    def _add_fault(self, repo_id: str, path: str, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault((repo_id, path), []).append(fault)

    def _take_fault(self, repo_id: str, path: str) -> Fault | None:
        with self._lock:
            faults = self._faults.get((repo_id, path), [])
            if not faults:
                return None
            fault = faults[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    faults.pop(0)
            return fault

    def _count(self, repo_id: str, path: str, n: int) -> None:
        with self._lock:
            self.bytes_served[(repo_id, path)] += n

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)


_API_RE = re.compile(r"^/api/models/(?P<rest>.+)$")
_RESOLVE_RE = re.compile(r"^/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_CDN_RE = re.compile(r"^/cdn/(?P<repo>[^/]+(?:/[^/]+)?)/(?P<sha256>[0-9a-f]{64})/(?P<path>.+)$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Refused(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    disable_nagle_algorithm = True  # headers and body go out in separate writes; no 40 ms delayed-ACK stalls
    hub: FakeHub  # set on the subclass by serve_hub

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read hub.requests
        pass

    # ----- plumbing --------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _dispatch(self, *, head: bool) -> None:
        url = urlsplit(self.path)
        # Recorded before answering, so a test sees requests that are still stalled.
        record = RequestRecord(
            method=self.command,
            path=unquote(url.path),
            range=self.headers.get("Range"),
            authorization="Authorization" in self.headers,
            status=0,
        )
        self.hub._record(record)
        try:
            if url.path.startswith("/api/models/"):
                record.status = self._api(url.path, parse_qs(url.query), head=head)
            elif (match := _CDN_RE.match(url.path)) is not None:
                record.status = self._cdn(
                    unquote(match["repo"]), match["sha256"], unquote(match["path"]), head=head
                )
            elif (match := _RESOLVE_RE.match(url.path)) is not None:
                record.status = self._resolve(
                    unquote(match["repo"]), unquote(match["rev"]), unquote(match["path"]), head=head
                )
            else:
                raise _Refused(404, None, "no such endpoint")
        except _Refused as refused:
            record.status = refused.status
            self._send_error(refused, head=head)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_error(self, refused: _Refused, *, head: bool) -> None:
        body = json.dumps({"error": refused.message}).encode()
        self.send_response(refused.status)
        if refused.code:
            self.send_header("X-Error-Code", refused.code)
        self.send_header("X-Error-Message", refused.message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, payload: object, *, head: bool) -> int:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        return 200

    def _repo(self, repo_id: str) -> Repo:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            raise _Refused(404, "RepoNotFound", f"Repository {repo_id} not found")
        if repo.token is not None:
            auth = self.headers.get("Authorization", "")
            if auth != f"Bearer {repo.token}":
                message = "Invalid credentials in Authorization header" if auth else "Unauthorized"
                raise _Refused(401, None, message)
        return repo

    def _commit(self, repo: Repo, revision: str) -> tuple[str, dict[str, ServedFile]]:
        sha = repo.resolve(revision)
        if sha is None:
            raise _Refused(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, repo.commits[sha]

    # ----- API: revision info and tree ----------------------------------------------------------
    def _api(self, path: str, query: dict[str, list[str]], *, head: bool) -> int:
        rest = path[len("/api/models/") :]
        if "/tree/" in rest:
            repo_id, _, tail = rest.partition("/tree/")
            revision, _, prefix = tail.partition("/")
            repo = self._repo(unquote(repo_id))
            sha, files = self._commit(repo, unquote(revision))
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._send_json(_tree(files, unquote(prefix), recursive=recursive), head=head)
        if "/revision/" in rest:
            repo_id, _, revision = rest.partition("/revision/")
        else:
            repo_id, revision = rest, "main"
        fault = self.hub._take_fault(unquote(repo_id), API_FAULT_KEY)
        if fault is not None and fault.kind == "status":
            raise _Refused(fault.status, None, f"injected HTTP {fault.status}")
        repo = self._repo(unquote(repo_id))
        sha, files = self._commit(repo, unquote(revision))
        info = {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": sha,
            "private": repo.token is not None,
            "siblings": [{"rfilename": p} for p in sorted(files)],
            **repo.info,
        }
        return self._send_json(info, head=head)

    # ----- resolve: the file bytes ---------------------------------------------------------------
    def _resolve(self, repo_id: str, revision: str, path: str, *, head: bool) -> int:
        repo = self._repo(repo_id)
        sha, files = self._commit(repo, revision)
        served = files.get(path)
        if served is None:
            raise _Refused(404, "EntryNotFound", f"{path} does not exist at {revision}")
        linked = {"X-Repo-Commit": sha}
        if served.lfs:
            linked.update({"X-Linked-Etag": f'"{served.sha256}"', "X-Linked-Size": str(served.content.size)})
        if served.lfs and self.hub.cdn_redirect:
            # Like the Hub: LFS bytes come from a CDN on another host, named by the content hash.
            self.send_response(302)
            self.send_header("Location", f"{self.hub.cdn_url}/cdn/{repo_id}/{served.sha256}/{path}")
            for name, value in linked.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return 302
        return self._send_content(repo_id, served, f'"{served.etag()}"', linked, head=head)

    def _cdn(self, repo_id: str, sha256: str, path: str, *, head: bool) -> int:
        repo = self.hub.repos.get(repo_id)
        served = next(
            (
                f
                for commit in (repo.commits.values() if repo else [])
                for f in commit.values()
                if f.path == path and f.sha256 == sha256
            ),
            None,
        )
        if served is None:
            raise _Refused(404, None, "no such object")
        return self._send_content(repo_id, served, f'"cdn-{sha256[:16]}"', {}, head=head)

    def _send_content(
        self, repo_id: str, served: ServedFile, etag: str, extra: dict[str, str], *, head: bool
    ) -> int:
        fault = None if head else self.hub._take_fault(repo_id, served.path)
        if fault is not None and fault.kind == "status":
            raise _Refused(fault.status, None, f"injected HTTP {fault.status}")
        size = served.content.size
        start, end = 0, size - 1
        status = 200
        range_header = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if range_header and (if_range is None or if_range == etag):
            match = _RANGE_RE.match(range_header.strip())
            if match is None or (not match[1] and not match[2]):
                raise _Refused(416, None, f"bad range {range_header}")
            if match[1]:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(match[2]))
            if start >= size and size > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416
            status = 206

        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        for name, value in extra.items():
            self.send_header(name, value)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not head:
            self._send_body(repo_id, served, start, length, fault)
        return status

    def _send_body(
        self, repo_id: str, served: ServedFile, start: int, length: int, fault: Fault | None
    ) -> None:
        sent = 0
        limit = fault.after_bytes if fault is not None and fault.kind in ("stall", "cut") else None
        while sent < length:
            if limit is not None and sent >= limit:
                assert fault is not None
                self.wfile.flush()
                if fault.kind == "cut":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.hub._release.wait(fault.seconds)
                limit = None
            want = min(_SEND_CHUNK, length - sent)
            if limit is not None:
                want = min(want, limit - sent)
            chunk = served.content.read(start + sent, want)
            if fault is not None and fault.kind == "corrupt":
                chunk = bytes(chunk).translate(_FLIP)
            self.wfile.write(chunk)
            sent += len(chunk)
            self.hub._count(repo_id, served.path, len(chunk))


def _tree(files: Mapping[str, ServedFile], prefix: str, *, recursive: bool) -> list[dict[str, object]]:
    prefix = prefix.strip("/")
    entries: dict[str, dict[str, object]] = {}
    for path, served in sorted(files.items()):
        if prefix and not path.startswith(prefix + "/"):
            continue
        relative = path[len(prefix) + 1 :] if prefix else path
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(([prefix] if prefix else []) + parts[:depth])
            if recursive or depth == 1:
                entries.setdefault(
                    folder,
                    {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "path": folder},
                )
        if recursive or len(parts) == 1:
            entries[path] = served.tree_entry()
    return list(entries.values())


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up mid-body (stall and kill tests do it on purpose) are not errors.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextlib.contextmanager
def serve_hub(
    host: str = "127.0.0.1", port: int = 0, *, tls: tuple[Path, Path] | None = None
) -> Iterator[FakeHub]:
    """Run a FakeHub on loopback in a background thread for the duration of the block.

    `tls=(certfile, keyfile)` serves https (see `self_signed_cert`).
    """
    hub = FakeHub()
    handler = type("BoundHandler", (_Handler,), {"hub": hub})
    server = _QuietServer((host, port), handler)
    scheme = "http"
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    hub.url = f"{scheme}://{host}:{server.server_address[1]}"
    hub.cdn_url = f"{scheme}://localhost:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        hub.release_stalls()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ----- repo contents ---------------------------------------------------------------------------
_MODEL_CACHE: dict[str, bytes] = {}


def tiny_torchscript_model() -> bytes:
    """A TorchScript 3→3 channel conv net (`torch.jit.script`), serialised like `model.pt` on disk."""
    if "model" not in _MODEL_CACHE:
        import torch  # imported here: only repos with a model pay for torch

        class TinyConvNet(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 3, kernel_size=3, padding=1)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return torch.sigmoid(self.conv(x))

        torch.manual_seed(0)
        buffer = io.BytesIO()
        torch.jit.save(torch.jit.script(TinyConvNet().eval()), buffer)
        _MODEL_CACHE["model"] = buffer.getvalue()
    return _MODEL_CACHE["model"]


def tiny_model_files(
    *, shards: int = 3, shard_size: int = 1024 * 1024, seed: int = 0
) -> dict[str, bytes | Content]:
    """A small model repo: TorchScript `model.pt`, `config.json`, a README and `shards` LFS shards."""
    files: dict[str, bytes | Content] = {
        "model.pt": tiny_torchscript_model(),
        "config.json": json.dumps(
            {"architectures": ["TinyConvNet"], "in_channels": 3, "out_channels": 3, "kernel_size": 3},
            indent=2,
        ).encode(),
        "README.md": b"# tiny\nA 3x3 conv net for tests.\n",
    }
    for i in range(shards):
        files[f"shards/shard-{i:05d}-of-{shards:05d}.bin"] = PatternBlob(shard_size, seed=seed * 1000 + i)
    return files


def write_files(files: Mapping[str, bytes | Content], directory: Path | str) -> Path:
    """Materialise repo contents on disk (e.g. for a test that needs `model.pt` as a file)."""
    root = Path(directory)
    for path, value in files.items():
        content = _as_content(value)
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            offset = 0
            while offset < content.size:
                chunk = content.read(offset, _SEND_CHUNK)
                fh.write(chunk)
                offset += len(chunk)
    return root


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost (openssl CLI); trust it with SSL_CERT_FILE."""
    cert, key = directory / "hub-cert.pem", directory / "hub-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll `predicate()` until truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def _safetensors_bytes(tensors: Mapping[str, tuple[str, tuple[int, ...]]]) -> bytes:
    """A valid safetensors file of zero-filled tensors {name: (dtype, shape)}, without torch."""
    import numpy as np
    from safetensors.numpy import save

    dtypes = {"F16": np.float16, "F32": np.float32, "I64": np.int64}
    return save({name: np.zeros(shape, dtype=dtypes[dtype]) for name, (dtype, shape) in tensors.items()})


def tiny_diffusers_files(
    *, variant: str | None = "fp16", with_checkpoint: bool = True
) -> dict[str, bytes | Content]:
    """An SD-turbo-shaped repo: model_index.json, component configs, tokenizer files, fp32
    safetensors plus their `variant` duplicates, and a top-level single-file checkpoint (the files
    the default patterns must skip). Not a loadable pipeline: the weights are tiny placeholders."""
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    files: dict[str, bytes | Content] = {
        "model_index.json": json.dumps(index, indent=2).encode(),
        "README.md": b"---\nlibrary_name: diffusers\npipeline_tag: text-to-image\n---\n# tiny sd\n",
        "feature_extractor/preprocessor_config.json": b'{"crop_size": 224}',
        "scheduler/scheduler_config.json": b'{"_class_name": "EulerDiscreteScheduler"}',
        "tokenizer/vocab.json": b'{"a": 0, "b": 1}',
        "tokenizer/merges.txt": b"#version: 0.2\na b\n",
        "tokenizer/tokenizer_config.json": b"{}",
        "tokenizer/special_tokens_map.json": b"{}",
    }
    for component, stem in (
        ("text_encoder", "model"),
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
    ):
        files[f"{component}/config.json"] = json.dumps({"_class_name": index[component][1]}).encode()
        files[f"{component}/{stem}.safetensors"] = _safetensors_bytes({"w": ("F32", (64, 64))})
        if variant:
            files[f"{component}/{stem}.{variant}.safetensors"] = _safetensors_bytes({"w": ("F16", (64, 64))})
    files["unet/diffusion_pytorch_model.bin"] = PatternBlob(20_000, seed=7)
    if with_checkpoint:
        files["sd_turbo.safetensors"] = PatternBlob(300_000, seed=8)
        files["sd_turbo.ckpt"] = PatternBlob(300_000, seed=9)
    return files


def tiny_transformers_files(
    architecture: str = "WhisperForConditionalGeneration", model_type: str = "whisper"
) -> dict[str, bytes | Content]:
    """A Whisper-shaped transformers repo: config, processor/tokenizer files, model.safetensors and
    the pytorch/TF/Flax duplicates the default patterns must skip (tiny placeholder weights)."""
    return {
        "config.json": json.dumps({"architectures": [architecture], "model_type": model_type}).encode(),
        "generation_config.json": b"{}",
        "preprocessor_config.json": b'{"feature_size": 80}',
        "tokenizer.json": b'{"version": "1.0"}',
        "tokenizer_config.json": b"{}",
        "vocab.json": b'{"a": 0}',
        "merges.txt": b"#version: 0.2\n",
        "normalizer.json": b"{}",
        "README.md": b"# tiny whisper\n",
        "model.safetensors": _safetensors_bytes({"w": ("F32", (32, 32)), "b": ("F32", (32,))}),
        "pytorch_model.bin": PatternBlob(4_000, seed=3),
        "tf_model.h5": PatternBlob(4_000, seed=4),
        "flax_model.msgpack": PatternBlob(4_000, seed=5),
    }


__all__ = [
    "Content",
    "FakeHub",
    "PatternBlob",
    "content_sha256",
    "free_port",
    "git_blob_oid",
    "self_signed_cert",
    "serve_hub",
    "tiny_diffusers_files",
    "tiny_model_files",
    "tiny_torchscript_model",
    "tiny_transformers_files",
    "wait_until",
    "write_files",
]
