"""Prometheus metrics of one adapter, in its own registry (several adapters may share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Triton at 64²..512² on CPU answers in 1-15 ms; GPUs and big frames go to seconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class AdapterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lpbyoc_adapter_requests",
            "Job and pipeline requests by route and outcome.",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.frames = Counter(
            "lpbyoc_adapter_frames",
            "Live video frames by outcome (processed, failed, dropped).",
            ["outcome"],
            registry=self.registry,
        )
        self.queue_drops = Counter(
            "lpbyoc_adapter_queue_drops",
            "Live frames dropped because processing could not keep up.",
            registry=self.registry,
        )
        self.adapter_seconds = Histogram(
            "lpbyoc_adapter_adapter_seconds",
            "Time spent in the adapter itself (decode, encode, HTTP), Triton time excluded.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.triton_seconds = Histogram(
            "lpbyoc_adapter_triton_seconds",
            "Time spent waiting for Triton's answer.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "lpbyoc_adapter_in_flight", "Requests being served now.", registry=self.registry
        )
        self.model_ready = Gauge(
            "lpbyoc_adapter_model_ready", "1 when Triton reports the model ready.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
