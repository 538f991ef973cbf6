"""HTTP to a go-livepeer orchestrator: TLS choice and failures mapped to condition reasons.

go-livepeer serves a self-signed certificate by default, so verification takes a CA bundle
(PEM, from a Secret) or an explicit opt-out; there is no silent fallback to unverified TLS.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

DEFAULT_TIMEOUT_S = 10.0


class OrchestratorError(Exception):
    """A call to the orchestrator failed; `reason` is the condition reason to report."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class TLSChoice:
    ca_pem: str | None = None
    insecure_skip_verify: bool = False

    @property
    def fingerprint(self) -> str:
        ca = hashlib.sha256(self.ca_pem.encode()).hexdigest() if self.ca_pem else ""
        return f"{ca}:{self.insecure_skip_verify}"

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure_skip_verify:
            return False
        if self.ca_pem is None:
            return True
        try:
            return ssl.create_default_context(cadata=self.ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise OrchestratorError("TLSError", f"CA bundle is not valid PEM: {exc}") from exc


def client(tls: TLSChoice, timeout_s: float = DEFAULT_TIMEOUT_S) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=tls.verify(), timeout=httpx.Timeout(timeout_s), follow_redirects=False)


class Clients:
    """One client per distinct TLS setting (CA bundle contents, opt-out), shared by every
    capability that uses it. A client per call would load the CA bundle (certifi's or the
    Secret's) into a new TLS context each time: CPU per registration, and a heap that OpenSSL
    leaves fragmented when thousands of capabilities register at once."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, *, clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        self._clients: dict[str, tuple[httpx.AsyncClient, float]] = {}  # fingerprint -> (client, last use)

    def __len__(self) -> int:
        return len(self._clients)

    def get(self, tls: TLSChoice) -> httpx.AsyncClient:
        """The client for `tls`; raises OrchestratorError (TLSError) for a CA bundle that is not PEM."""
        key = tls.fingerprint
        entry = self._clients.get(key)
        http = entry[0] if entry is not None else client(tls, self.timeout_s)
        self._clients[key] = (http, self._clock())
        return http

    async def close_idle(self, idle_s: float) -> None:
        """Close the clients nobody used for `idle_s` (a rotated CA bundle, a removed orchestrator)."""
        cutoff = self._clock() - idle_s
        for key, (http, used) in list(self._clients.items()):
            if used < cutoff:
                del self._clients[key]
                await http.aclose()

    async def close(self) -> None:
        clients = [http for http, _ in self._clients.values()]
        self._clients.clear()
        for http in clients:
            await http.aclose()


def _is_tls_failure(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    text = str(exc)
    return "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text


async def post(
    http: httpx.AsyncClient, url: str, *, secret: str, content: bytes, content_type: str
) -> httpx.Response:
    """POST with the raw orchSecret as Authorization (go-livepeer compares it verbatim)."""
    try:
        return await http.post(
            url, content=content, headers={"Authorization": secret, "Content-Type": content_type}
        )
    except httpx.TimeoutException as exc:
        raise OrchestratorError("Timeout", f"no answer from {url} within {http.timeout.read}s") from exc
    except httpx.TransportError as exc:
        if _is_tls_failure(exc):
            raise OrchestratorError(
                "TLSError",
                f"TLS handshake with {url} failed ({exc}); set orchestrator.tls.caBundleSecretRef "
                "or, knowingly, orchestrator.tls.insecureSkipVerify",
            ) from exc
        raise OrchestratorError("OrchestratorUnreachable", f"{url}: {exc or type(exc).__name__}") from exc


def raise_for_answer(response: httpx.Response, what: str) -> None:
    if response.status_code < 300:
        return
    body = response.text.strip()[:300]
    if response.status_code == 400 and "invalid authorization" in body:
        raise OrchestratorError(
            "OrchestratorUnauthorized",
            f"{what}: the orchestrator rejected the orchSecret (400 invalid authorization)",
        )
    if response.status_code == 400:
        raise OrchestratorError("OrchestratorRejected", f"{what}: 400 {body}")
    raise OrchestratorError("OrchestratorError", f"{what}: HTTP {response.status_code} {body}")
