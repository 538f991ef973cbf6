"""B8: aiModels.json render cost per capability, and ConfigMap writes per burst of changes.

Render: `render_aimodels` (claims → conflict resolution → stable JSON) for 1, 100 and 1,000
capabilities, against a baseline that only serialises the same entries with `json.dumps`
(no claims, no conflict check), interleaved round by round; µs per capability and the ratio.
Writes: a burst of K = 10 and 100 price changes against the Kubernetes API double (kmock on
loopback) through the coalescing writer, against a baseline that writes the ConfigMap on every
change; ConfigMap writes per burst (goal: 1) and the ratio.

    .venv/bin/python bench/bench_orchestrator.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kmock  # noqa: E402
from lpbyoc.kube import Kube  # noqa: E402
from lpbyoc.orchestrator import aimodels  # noqa: E402
from lpbyoc.orchestrator.aimodels import AiModelsClaim  # noqa: E402
from lpbyoc.orchestrator.aimodels_writer import AiModelsWriter  # noqa: E402

NAMESPACE = "bench"
ORCH = (NAMESPACE, "orch")


def claims(n: int, price: int = 100) -> list[AiModelsClaim]:
    return [
        AiModelsClaim(
            namespace=NAMESPACE,
            name=f"cap-{i:04d}",
            orchestrator="orch",
            pipeline="image-to-image",
            model_id=f"org/model-{i:04d}",
            creation_timestamp=f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
            price_per_unit=price + i,
            available=True,
            capacity=2,
            url=f"http://lpbyoc-cap-{i:04d}.{NAMESPACE}.svc.cluster.local:8000",
        )
        for i in range(n)
    ]


def baseline_render(items: list[AiModelsClaim]) -> str:
    return json.dumps([aimodels.entry(c) for c in items], indent=2) + "\n"


def time_per_cap(fn: Any, items: list[AiModelsClaim], repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        fn(items)
    return (time.perf_counter() - started) / repeat / len(items) * 1e6


def bench_render(rounds: int, sizes: list[int]) -> list[tuple[str, str, str, str]]:
    rows = []
    for n in sizes:
        items = claims(n)
        repeat = max(3, 3000 // n)
        ours, base = [], []
        for _ in range(rounds):  # interleaved: baseline, ours, baseline, ours, ...
            base.append(time_per_cap(baseline_render, items, repeat))
            ours.append(time_per_cap(aimodels.render_aimodels, items, repeat))
        o, b = statistics.median(ours), statistics.median(base)
        rows.append((f"render {n} caps", f"{o:.1f} µs/cap", f"{b:.1f} µs/cap", f"{o / b:.2f}x"))
    return rows


class Index(dict[tuple[str, str], list[AiModelsClaim]]):
    pass


async def writer_burst(kube: Kube, k: int, quiet_s: float) -> int:
    index = Index({ORCH: claims(5)})
    writer = AiModelsWriter(quiet_s=quiet_s, max_delay_s=10.0)
    writer.attach(index, kube)
    writer.mark_dirty(ORCH)
    assert await writer.settled(ORCH, 10.0)
    before = writer.writes
    for step in range(1, k + 1):  # K edits arriving 2 ms apart, as watch events of a scripted change
        index[ORCH] = claims(5, price=1000 + step)
        writer.mark_dirty(ORCH)
        await asyncio.sleep(0.002)
    assert await writer.settled(ORCH, 30.0)
    await writer.close()
    return writer.writes - before


async def naive_burst(kube: Kube, k: int) -> int:
    """Write the ConfigMap on every change, as a handler without coalescing would."""
    writes = 0
    for step in range(1, k + 1):
        rendered = aimodels.render_aimodels(claims(5, price=5000 + step))
        desired = aimodels.file_object(NAMESPACE, "orch", rendered, secret=False)
        observed = await kube.get("v1", "ConfigMap", desired["metadata"]["name"], NAMESPACE)
        await kube.ensure(desired, observed)
        writes += 1
        await asyncio.sleep(0.002)
    return writes


async def bench_writes(bursts: list[int], rounds: int) -> list[tuple[str, str, str, str]]:
    rows = []
    async with kmock.KubernetesEmulator() as api, kmock.Server(api):
        api.resources.load_bundled()
        kube = Kube.connect(server=str(api.url), patch_strategy="merge")
        try:
            for k in bursts:
                ours, base = [], []
                for _ in range(rounds):
                    base.append(await naive_burst(kube, k))
                    ours.append(await writer_burst(kube, k, quiet_s=0.2))
                o, b = statistics.median(ours), statistics.median(base)
                rows.append((f"writes per burst K={k}", f"{o:g}", f"{b:g}", f"{o / b:.3f}x"))
        finally:
            await kube.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (well under a minute)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    rows = bench_render(rounds, [1, 100, 1000])
    rows += asyncio.run(bench_writes([10, 100], 1 if args.quick else 3))
    header = ("B8 case", "lpbyoc", "baseline", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print("baseline: render = json.dumps of the same entries (no resolution); writes = one write per change")
    return 0


if __name__ == "__main__":
    sys.exit(main())
