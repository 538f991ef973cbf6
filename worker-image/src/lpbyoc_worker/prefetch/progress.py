"""Download progress: a thread-safe tracker and the HTTP endpoint the operator polls.

Why an HTTP endpoint rather than the Job writing to the API: the prefetch pod runs with no
service-account token at all (least privilege); the operator, which already watches the pod,
polls `http://<podIP>:<port>/progress` while it runs and reads the final result from the
termination message. `/metrics` serves the same numbers to Prometheus.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("lpbyoc_worker.prefetch")

STATES = ("resolving", "downloading", "verifying", "done", "failed")
RATE_WINDOW_SECONDS = 10.0


class Progress:
    """Counters shared by the download threads, the HTTP server and the final result."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.state = "resolving"
        self.sha: str | None = None
        self.bytes_total = 0
        self.bytes_done = 0
        self.files_total = 0
        self.files_done = 0
        self.bytes_downloaded = 0  # bytes received over the network in this run
        self.retries = 0
        self._samples: deque[tuple[float, int]] = deque()

    def set_state(self, state: str) -> None:
        assert state in STATES, state
        with self._lock:
            self.state = state

    def start(self, *, sha: str, bytes_total: int, files_total: int) -> None:
        with self._lock:
            self.sha = sha
            self.bytes_total = bytes_total
            self.files_total = files_total

    def add_present(self, nbytes: int) -> None:
        """Bytes already on disk (resumed partial files) count as done without being downloaded."""
        with self._lock:
            self.bytes_done += nbytes

    def add_downloaded(self, nbytes: int) -> None:
        with self._lock:
            self.bytes_done += nbytes
            self.bytes_downloaded += nbytes
            now = self._clock()
            self._samples.append((now, self.bytes_downloaded))
            self._trim(now)

    def discard(self, nbytes: int) -> None:
        """Bytes thrown away (a changed or corrupt partial file) are no longer done."""
        with self._lock:
            self.bytes_done = max(0, self.bytes_done - nbytes)

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def _trim(self, now: float) -> None:
        while len(self._samples) > 1 and now - self._samples[0][0] > RATE_WINDOW_SECONDS:
            self._samples.popleft()

    def rate(self) -> float:
        with self._lock:
            now = self._clock()
            self._trim(now)
            if not self._samples:
                return 0.0
            first_time, first_bytes = self._samples[0]
            elapsed = now - first_time
            if elapsed <= 0:
                return 0.0
            return (self.bytes_downloaded - first_bytes) / elapsed

    def to_json(self) -> dict[str, Any]:
        rate = self.rate()
        with self._lock:
            remaining = max(0, self.bytes_total - self.bytes_done)
            eta = None
            if self.state == "done":
                eta = 0.0
            elif rate > 0:
                eta = round(remaining / rate, 1)
            return {
                "state": self.state,
                "sha": self.sha,
                "bytesDone": self.bytes_done,
                "bytesTotal": self.bytes_total,
                "filesDone": self.files_done,
                "filesTotal": self.files_total,
                "rateBytesPerSecond": round(rate, 1),
                "etaSeconds": eta,
            }


class _ProgressCollector:
    """Prometheus view of a Progress, read at scrape time so the numbers never drift apart."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def collect(self) -> Iterator[Metric]:
        data = self.progress.to_json()
        gauges = {
            "lpbyoc_prefetch_bytes_done": ("Bytes of the snapshot on disk", data["bytesDone"]),
            "lpbyoc_prefetch_bytes_total": ("Bytes of the snapshot", data["bytesTotal"]),
            "lpbyoc_prefetch_files_done": ("Files of the snapshot complete", data["filesDone"]),
            "lpbyoc_prefetch_files_total": ("Files of the snapshot", data["filesTotal"]),
            "lpbyoc_prefetch_rate_bytes_per_second": ("Download rate", data["rateBytesPerSecond"]),
        }
        for name, (doc, value) in gauges.items():
            yield GaugeMetricFamily(name, doc, value=value)
        if data["etaSeconds"] is not None:
            yield GaugeMetricFamily(
                "lpbyoc_prefetch_eta_seconds", "Estimated seconds left", value=data["etaSeconds"]
            )
        state = GaugeMetricFamily("lpbyoc_prefetch_state", "1 for the current state", labels=["state"])
        for name in STATES:
            state.add_metric([name], 1.0 if name == data["state"] else 0.0)
        yield state
        yield CounterMetricFamily(
            "lpbyoc_prefetch_downloaded_bytes",
            "Bytes received in this run",
            value=self.progress.bytes_downloaded,
        )
        yield CounterMetricFamily("lpbyoc_prefetch_retries", "Transfer retries", value=self.progress.retries)


class ProgressServer:
    """`GET /progress` (JSON) and `GET /metrics` (Prometheus) in a daemon thread."""

    def __init__(self, progress: Progress, port: int, host: str = "0.0.0.0") -> None:
        registry = CollectorRegistry()
        registry.register(_ProgressCollector(progress))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/progress":
                    body, ctype = json.dumps(progress.to_json()).encode(), "application/json"
                elif self.path.split("?")[0] == "/metrics":
                    body, ctype = generate_latest(registry), CONTENT_TYPE_LATEST
                else:
                    self.send_error(404, "try /progress or /metrics")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # polled every few seconds; not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="progress", daemon=True)

    def __enter__(self) -> ProgressServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class ProgressLogger:
    """A log line every `interval` seconds while downloading, for `kubectl logs`."""

    def __init__(self, progress: Progress, interval: float = 10.0) -> None:
        self.progress = progress
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-log", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            data = self.progress.to_json()
            if data["state"] != "downloading":
                continue
            total = data["bytesTotal"] or 1
            eta = "?" if data["etaSeconds"] is None else f"{data['etaSeconds']:.0f}s"
            log.info(
                "%.1f%%: %d of %d bytes, %d of %d files, %.1f MB/s, ETA %s",
                100 * data["bytesDone"] / total,
                data["bytesDone"],
                data["bytesTotal"],
                data["filesDone"],
                data["filesTotal"],
                data["rateBytesPerSecond"] / 1e6,
                eta,
            )

    def __enter__(self) -> ProgressLogger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
