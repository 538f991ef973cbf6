"""The byte-moving GET: stdlib `http.client` with kept-alive connections per thread.

Why not httpx here: streaming through httpx costs a Python-level event per 64 KiB read, which
on a loaded node made the transfer plus its sha256 slower than the link; `readinto` a reused
1 MiB buffer moves the same bytes at less than half the CPU (see bench/bench_prefetch.py).
The Hub API calls (revision, tree) still go through huggingface_hub.

Handles what the Hub needs: https with the certifi bundle, redirects to a CDN (the
Authorization header is dropped when the host changes), and HTTP(S)_PROXY / NO_PROXY.
"""

from __future__ import annotations

import functools
import http.client
import os
import ssl
import threading
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import SplitResult, urljoin, urlsplit

_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class TransportError(Exception):
    """The network failed (not the disk); `stalled` when it was a read that timed out."""

    def __init__(self, message: str, *, stalled: bool) -> None:
        super().__init__(message)
        self.stalled = stalled


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """Built once, on first https use: loading the CA bundle costs tens of milliseconds.

    `SSL_CERT_FILE` (a mirror behind a private CA) wins over the certifi bundle, as in httpx.
    """
    cafile = os.environ.get("SSL_CERT_FILE")
    if not cafile:
        try:
            import certifi  # httpx's own dependency, so present wherever huggingface_hub is

            cafile = certifi.where()
        except ImportError:  # pragma: no cover - certifi is always installed with httpx
            cafile = None
    return ssl.create_default_context(cafile=cafile)


@dataclass
class Response:
    status: int
    headers: Message
    url: str
    _response: http.client.HTTPResponse
    _release: object = field(repr=False)
    first_headers: Message | None = None  # of the first hop (the Hub's redirect), when redirected

    @property
    def origin_headers(self) -> Message:
        """Headers of the first response in the chain: where the Hub puts X-Linked-Etag and X-Repo-Commit."""
        return self.first_headers if self.first_headers is not None else self.headers

    def readinto(self, buffer: memoryview) -> int:
        """Fill `buffer` from the body; 0 at its end. TransportError on a network failure."""
        try:
            n = self._response.readinto(buffer)
        except TimeoutError as exc:
            self.close(reusable=False)
            raise TransportError("no bytes within the stall timeout", stalled=True) from exc
        except (http.client.HTTPException, OSError) as exc:
            self.close(reusable=False)
            raise TransportError(f"connection failed mid-body: {type(exc).__name__}", stalled=False) from exc
        if n == 0 and self._response.length:
            # http.client reports a body cut short as a plain end of stream; it is a network failure.
            self.close(reusable=False)
            raise TransportError(
                f"connection closed with {self._response.length} bytes missing", stalled=False
            )
        return n

    def close(self, *, reusable: bool = True) -> None:
        release = self._release
        assert callable(release)
        release(reusable and self._response.isclosed())


class Transport:
    """GETs with per-thread connection reuse; safe to share between download threads."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def get(self, url: str, headers: dict[str, str]) -> Response:
        """GET `url`, following redirects; the caller reads the body and closes the Response."""
        headers = dict(headers)
        origin = urlsplit(url).netloc
        first: Message | None = None
        for _ in range(MAX_REDIRECTS + 1):
            response = self._request(url, headers)
            if response.status not in _REDIRECTS:
                response.first_headers = first
                return response
            first = first if first is not None else response.headers
            location = response.headers.get("Location")
            _drain(response)
            if not location:
                return response
            url = urljoin(url, location)
            if urlsplit(url).netloc != origin:
                headers.pop("Authorization", None)  # a token is for the Hub, never for a CDN
                headers.pop("If-Range", None)  # a CDN has ETags of its own
        raise TransportError(f"more than {MAX_REDIRECTS} redirects", stalled=False)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _request(self, url: str, headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        pool: dict[tuple[str, str], tuple[http.client.HTTPConnection, bool]] = (
            self._local.__dict__.setdefault("pool", {})
        )
        pooled = pool.pop(key, None)
        for attempt in range(2):
            conn, absolute = pooled if pooled is not None else self._connect(parts)
            target = url if absolute else parts.path + (f"?{parts.query}" if parts.query else "")
            try:
                conn.request("GET", target, headers=headers)
                response = conn.getresponse()
                break
            except TimeoutError as exc:
                conn.close()
                raise TransportError("no response within the stall timeout", stalled=True) from exc
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                # A kept-alive connection the server closed meanwhile gets one fresh try.
                if pooled is None or attempt == 1:
                    raise TransportError(
                        f"request failed: {type(exc).__name__}: {exc}", stalled=False
                    ) from exc
                pooled = None
        else:  # pragma: no cover - the loop always breaks or raises
            raise AssertionError

        def release(reusable: bool) -> None:
            if reusable and not response.will_close:
                pool[key] = (conn, absolute)
            else:
                conn.close()

        return Response(
            status=response.status, headers=response.headers, url=url, _response=response, _release=release
        )

    def _connect(self, parts: SplitResult) -> tuple[http.client.HTTPConnection, bool]:
        """A new connection for `parts`, and whether requests on it name the absolute URL (plain proxy)."""
        host = parts.hostname or ""
        proxy = _proxy_for(parts.scheme, host)
        conn: http.client.HTTPConnection
        absolute = False
        if proxy is None:
            conn = self._new(parts.scheme, host, parts.port)
        else:
            proxy_parts = urlsplit(proxy)
            conn = self._new(proxy_parts.scheme or "http", proxy_parts.hostname or "", proxy_parts.port)
            if parts.scheme == "https":
                conn.set_tunnel(host, parts.port)
            else:
                absolute = True
        with self._lock:
            self._all.append(conn)
        return conn, absolute

    def _new(self, scheme: str, host: str, port: int | None) -> http.client.HTTPConnection:
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout, context=_ssl_context())
        return http.client.HTTPConnection(host, port, timeout=self.timeout)


def _proxy_for(scheme: str, host: str) -> str | None:
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme)
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def _drain(response: Response) -> None:
    buffer = memoryview(bytearray(64 * 1024))
    try:
        while response.readinto(buffer):
            pass
    finally:
        response.close()
