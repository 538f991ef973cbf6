"""Prometheus metrics of the operator, in a registry of its own (no process/platform noise)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from lpbyoc.policy import PHASES

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter("lpbyoc_reconciles", "Reconciles run, by outcome.", ["outcome"], registry=REGISTRY)
RECONCILE_SECONDS = Histogram(
    "lpbyoc_reconcile_duration_seconds",
    "Duration of one capability reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ERRORS = Counter("lpbyoc_reconcile_errors", "Reconcile errors, by reason.", ["reason"], registry=REGISTRY)
CAPABILITIES = Gauge("lpbyoc_capabilities", "Capabilities by status.phase.", ["phase"], registry=REGISTRY)
API_WRITES = Counter(
    "lpbyoc_api_writes", "Kubernetes API writes, by verb and kind.", ["verb", "kind"], registry=REGISTRY
)
PREFETCH_BYTES_DONE = Gauge(
    "lpbyoc_prefetch_bytes_done",
    "Bytes downloaded by the running prefetch.",
    ["namespace", "capability"],
    registry=REGISTRY,
)
PREFETCH_BYTES_TOTAL = Gauge(
    "lpbyoc_prefetch_bytes_total",
    "Bytes the running prefetch will download.",
    ["namespace", "capability"],
    registry=REGISTRY,
)


def count_write(verb: str, kind: str) -> None:
    API_WRITES.labels(verb=verb, kind=kind).inc()


def set_phases(phases: Iterable[str]) -> None:
    """Replace the phase gauge with the counts of `phases` (every known phase reported, 0 included)."""
    counts = dict.fromkeys(PHASES, 0)
    for phase in phases:
        counts[phase] = counts.get(phase, 0) + 1
    for phase, count in counts.items():
        CAPABILITIES.labels(phase=phase).set(count)


def set_prefetch(namespace: str, capability: str, done: float | None, total: float | None) -> None:
    if done is None or total is None:
        forget_prefetch(namespace, capability)
        return
    PREFETCH_BYTES_DONE.labels(namespace=namespace, capability=capability).set(done)
    PREFETCH_BYTES_TOTAL.labels(namespace=namespace, capability=capability).set(total)


def forget_prefetch(namespace: str, capability: str) -> None:
    for gauge in (PREFETCH_BYTES_DONE, PREFETCH_BYTES_TOTAL):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, capability)


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Expose /metrics on `port` in a background thread."""
    start_http_server(port, addr=addr, registry=REGISTRY)
