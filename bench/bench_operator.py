"""Operator scale benchmark: N capabilities created at once against the API double.

For each N (each in a fresh process) the real operator (kopf) reconciles N byoc capabilities
created at once, each with its own model (so N claims, Jobs, Services and Deployments). A child
process holds everything else: the API double (kmock), a stand-in orchestrator, the creation of
the capabilities and a stand-in kubelet that completes every prefetch Job and makes every
Deployment available. The RSS measured is therefore the operator's alone.

Columns: time until all N are Ready, per capability; the pure render + status policy time per
capability (the baseline: what the reconcile computes without any API); operator API writes
per reconcile; writes and reconciles during an idle window of several resyncs; RSS growth per
watched capability. The last line is the per-capability cost at the largest N over N=1.

    .venv/bin/python bench/bench_operator.py [--quick] [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import kopf
from lpbyoc import metrics
from lpbyoc.builders import BuildContext, build_children
from lpbyoc.commands.demo import ORCH_SECRET
from lpbyoc.conditions import merge
from lpbyoc.kube import Kube
from lpbyoc.operator_settings import RuntimeTuning
from lpbyoc.policy import Observed, compute_conditions, compute_phase, desired_status
from lpbyoc.reconcile import Runtime
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import API_VERSION, KIND, parse_spec

NAMESPACE = "default"
RESYNC_S = 2.0
IDLE_WINDOW_S = 2.5 * RESYNC_S
CREATE_CONCURRENCY = 50


# -- the child process: API double, stand-in orchestrator, creator and kubelet -------------------


class ClusterSide:
    """Runs in the child process: creates the capabilities and plays the kubelet and controllers."""

    def __init__(self, api: Any, api_url: str, orch_url: str) -> None:
        self.api = api
        self.kube = Kube.connect(server=api_url, patch_strategy="merge")
        self.orch_url = orch_url
        self.n = 0
        self.finished: set[str] = set()
        self.ready = 0
        self.phases: Counter[str] = Counter()
        self.task: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        secret = {"secret": base64.b64encode(ORCH_SECRET.encode()).decode()}
        await self.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "orch", "namespace": NAMESPACE},
                "data": secret,
            }
        )

    async def start(self, n: int) -> None:
        self.n = n
        limit = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(i: int) -> None:
            async with limit:
                await self.kube.create(
                    {
                        "apiVersion": API_VERSION,
                        "kind": KIND,
                        "metadata": {"name": f"cap-{i}", "namespace": NAMESPACE},
                        "spec": spec_for(i, self.orch_url),
                    }
                )

        await asyncio.gather(*(create(i) for i in range(n)))
        self.task = asyncio.get_running_loop().create_task(self._play())

    async def _play(self) -> None:
        while True:
            await kubelet_step(self.kube, self.finished)
            caps = await self.kube.list(API_VERSION, KIND, NAMESPACE)
            self.phases = Counter(str((c.get("status") or {}).get("phase")) for c in caps)
            self.ready = self.phases.get("Ready", 0)
            await asyncio.sleep(0.1)

    def state(self) -> dict[str, Any]:
        counts = {m: self.api.method_counts[m] for m in ("GET", "POST", "PATCH", "PUT", "DELETE")}
        writes = counts["POST"] + counts["PATCH"] + counts["PUT"] + counts["DELETE"]
        return {
            "writes": writes,
            "kubeletWrites": sum(self.kube.writes.values()),
            "ready": self.ready,
            "phases": dict(self.phases),
        }


def serve_api() -> None:
    from aiohttp import web
    from lpbyoc.commands.demo import DemoPeers, LoopThread, api_double

    with LoopThread("api") as thread:
        api, api_url = api_double(thread, request_log_limit=8)
        peers = DemoPeers()
        peers_url, _, runner = thread.run(peers.start())
        side = ClusterSide(api, api_url, peers_url)
        thread.run(side.prepare())

        async def state(request: web.Request) -> web.Response:
            return web.json_response(side.state())

        async def start(request: web.Request) -> web.Response:
            await side.start(int(request.query["n"]))
            return web.json_response(side.state())

        async def control() -> tuple[str, web.AppRunner]:
            app = web.Application()
            app.router.add_get("/state", state)
            app.router.add_post("/start", start)
            control_runner = web.AppRunner(app, access_log=None)
            await control_runner.setup()
            site = web.TCPSite(control_runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return f"http://127.0.0.1:{port}", control_runner

        control_url, control_runner = thread.run(control())
        print(json.dumps({"api": api_url, "orch": peers_url, "control": control_url}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        if side.task is not None:
            thread.loop.call_soon_threadsafe(side.task.cancel)
        thread.run(side.kube.close())
        thread.run(control_runner.cleanup())
        thread.run(runner.cleanup())


# -- the parent: the operator alone -----------------------------------------------------------------


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def spec_for(i: int, orch_url: str) -> dict[str, Any]:
    # The default TLS setting (verify against the system CA bundle), as a user would leave it;
    # the stand-in orchestrator is plain HTTP, so TLS itself is never negotiated.
    return {
        "capability": {"name": f"cap-{i}", "integration": "byoc"},
        "model": {"repo": f"bench/model-{i}", "revision": f"{i:040x}"},
        "cache": {"size": "1Gi"},
        "replicas": 1,
        "orchestrator": {
            "name": "orch",
            "url": orch_url,
            "secretRef": {"name": "orch", "key": "secret"},
        },
    }


def render_seconds_per_cr(specs: list[dict[str, Any]]) -> float:
    """The pure part of a reconcile: parse, build every child, compute conditions and status."""
    started = time.perf_counter()
    for i, raw in enumerate(specs):
        spec = parse_spec(raw)
        ctx = BuildContext(
            namespace=NAMESPACE,
            name=f"cap-{i}",
            uid=f"uid-{i}",
            spec=spec,
            resolved_revision=spec.model.revision,
        )
        build_children(ctx, weights_ready=True)
        obs = Observed(desired_replicas=spec.replicas, prefetch_state="succeeded")
        conds = compute_conditions(obs)
        phase = compute_phase(conds, obs)
        desired_status(
            obs,
            merge(None, conds, 1, "2026-01-01T00:00:00Z"),
            observed_generation=1,
            endpoint="",
            selector="",
            resolved_revision=spec.model.revision,
            phase=phase,
        )
    return (time.perf_counter() - started) / len(specs)


def reconcile_count() -> float:
    return sum(
        sample.value
        for metric in metrics.RECONCILES.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


async def kubelet_step(kube: Kube, finished: set[str]) -> None:
    """Complete every prefetch Job and make every Deployment available (once each)."""
    for job in await kube.list("batch/v1", "Job", NAMESPACE):
        name = job["metadata"]["name"]
        if f"job/{name}" not in finished:
            await kube.patch_status(
                "batch/v1",
                "Job",
                name,
                NAMESPACE,
                {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
            )
            finished.add(f"job/{name}")
    for dep in await kube.list("apps/v1", "Deployment", NAMESPACE):
        name = dep["metadata"]["name"]
        if f"deployment/{name}" not in finished:
            status = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
            await kube.patch_status("apps/v1", "Deployment", name, NAMESPACE, status)
            finished.add(f"deployment/{name}")


async def measure(n: int, urls: dict[str, str], trace: bool = False) -> dict[str, float]:
    settings = OperatorSettings(patch_strategy="merge")
    operator_kube = Kube.connect(server=urls["api"], patch_strategy="merge", on_write=metrics.count_write)
    runtime = Runtime(kube=operator_kube, settings=settings, tuning=RuntimeTuning(resync_interval=RESYNC_S))
    memo = kopf.Memo(runtime=runtime, server=urls["api"], api_double=True)
    stop = asyncio.Event()
    import lpbyoc.handlers  # noqa: F401  (registers the handlers with kopf)

    client = httpx.AsyncClient(base_url=urls["control"], timeout=120)
    operator = asyncio.create_task(
        kopf.operator(namespaces=[NAMESPACE], standalone=True, memo=memo, stop_flag=stop)
    )
    try:
        await asyncio.sleep(1.0)  # the operator opens its watches
        gc.collect()
        rss_before = rss_kib()
        before, reconciles_before = (await client.get("/state")).json(), reconcile_count()
        started, cpu_started = time.perf_counter(), time.process_time()
        await client.post("/start", params={"n": n})
        deadline = started + 60 + 0.5 * n
        while True:
            state = (await client.get("/state")).json()
            if trace:
                print(f"{time.perf_counter() - started:6.1f}s {state['phases']}", file=sys.stderr)
            if state["ready"] == n:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"N={n}: not all Ready after {time.perf_counter() - started:.0f}s: {state['phases']}"
                )
            if operator.done():
                operator.result()
            await asyncio.sleep(0.1)
        all_ready, cpu_ready = time.perf_counter() - started, time.process_time() - cpu_started
        # Wait until writes stop (the last Events and status writes of the burst), then measure idle.
        settled_at, last_writes, quiet_since = time.perf_counter(), -1, time.perf_counter()
        while time.perf_counter() - quiet_since < 2 * RESYNC_S and time.perf_counter() - settled_at < 120:
            writes = (await client.get("/state")).json()["writes"]
            if writes != last_writes:
                last_writes, quiet_since = writes, time.perf_counter()
            await asyncio.sleep(0.5)
        ready_state, reconciles_ready = (await client.get("/state")).json(), reconcile_count()
        # Writes by the operator: all writes but the capabilities' creation and the kubelet's.
        operator_writes = (
            (ready_state["writes"] - before["writes"])
            - n
            - (ready_state["kubeletWrites"] - before["kubeletWrites"])
        )
        reconciles = reconciles_ready - reconciles_before

        await asyncio.sleep(IDLE_WINDOW_S)
        idle_state = (await client.get("/state")).json()
        idle_writes = (idle_state["writes"] - ready_state["writes"]) - (
            idle_state["kubeletWrites"] - ready_state["kubeletWrites"]
        )
        idle_reconciles = reconcile_count() - reconciles_ready
        gc.collect()
        rss_after = rss_kib()
        specs = [spec_for(i, "http://orch") for i in range(n)]
        return {
            "rss_kib": rss_after,
            "n": n,
            "ready_s": all_ready,
            "per_cr_ms": 1000 * all_ready / n,
            "cpu_per_cr_ms": 1000 * cpu_ready / n,
            "render_ms": 1000 * render_seconds_per_cr(specs),
            "writes_per_reconcile": operator_writes / max(1.0, reconciles),
            "writes_per_cr": operator_writes / n,
            "idle_writes": idle_writes,
            "idle_reconciles": idle_reconciles,
            "rss_kib_per_cr": (rss_after - rss_before) / n,
        }
    finally:
        stop.set()
        await asyncio.wait_for(operator, timeout=30)
        await operator_kube.close()
        await client.aclose()


def run_size(n: int, trace: bool = False) -> dict[str, float]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-api"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        urls = json.loads(child.stdout.readline())
        return asyncio.run(measure(n, urls, trace))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)


def run_isolated(n: int, trace: bool) -> dict[str, float]:
    """One size in a fresh process, so that RSS is not inherited from the previous size."""
    command = [sys.executable, __file__, "--one", str(n), *(["--trace"] if trace else [])]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    row: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 50 only (under a minute)")
    parser.add_argument("--sizes", default="", help="comma-separated N values (default 1,100,1000)")
    parser.add_argument("--serve-api", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help="print phase counts while waiting")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_api:
        serve_api()
        return 0
    kopf.configure(quiet=True)
    if args.one:
        print(json.dumps(run_size(args.one, args.trace)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([1, 50] if args.quick else [1, 100, 1000])
    rows = [run_isolated(n, args.trace) for n in sizes]
    header = (
        "N",
        "all Ready s",
        "per CR ms",
        "operator CPU per CR ms",
        "render per CR ms",
        "writes/reconcile",
        "writes/CR",
        f"idle writes ({IDLE_WINDOW_S:.0f}s)",
        "idle reconciles",
        "RSS MiB",
        "RSS growth KiB/CR",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print(
            f"| {r['n']:.0f} | {r['ready_s']:.2f} | {r['per_cr_ms']:.1f} | {r['cpu_per_cr_ms']:.1f} | {r['render_ms']:.3f} | "
            f"{r['writes_per_reconcile']:.2f} | {r['writes_per_cr']:.1f} | {r['idle_writes']:.0f} | "
            f"{r['idle_reconciles']:.0f} | {r['rss_kib'] / 1024:.0f} | {r['rss_kib_per_cr']:.1f} |"
        )
    first, last = rows[0], rows[-1]
    ratio = last["per_cr_ms"] / first["per_cr_ms"]
    if len(rows) >= 2:
        prev = rows[-2]
        marginal = (last["rss_kib"] - prev["rss_kib"]) / max(1.0, last["n"] - prev["n"])
        print(f"\nmarginal RSS per CR from N={prev['n']:.0f} to N={last['n']:.0f}: {marginal:.1f} KiB")
    cpu_ratio = last["cpu_per_cr_ms"] / first["cpu_per_cr_ms"]
    print(
        f"\nper-CR time to Ready, N={last['n']:.0f} / N={first['n']:.0f}: {ratio:.2f} (target <= 1.5); "
        f"operator CPU per CR: {cpu_ratio:.2f}; "
        f"per-CR reconcile vs pure render at N={last['n']:.0f}: {last['per_cr_ms'] / last['render_ms']:.0f}x; "
        f"idle writes: {sum(r['idle_writes'] for r in rows):.0f} (target 0); "
        f"RSS per CR at N={last['n']:.0f}: {last['rss_kib_per_cr']:.1f} KiB (target <= 50)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
