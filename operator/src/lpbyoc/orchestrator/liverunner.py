"""liveRunner: the `Registered` condition from what each ready worker pod reports.

The heartbeats themselves run inside the pods (`lpbyoc_worker.liverunner` explains why);
the operator only reads `GET http://<podIP>:<port>/registration` of the view's ready pods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from lpbyoc.view import CapabilityView, ConditionResult

REGISTRATION_PATH = "/registration"
READ_TIMEOUT_S = 3.0


def registration_url(pod_ip: str, port: int) -> str:
    host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
    return f"http://{host}:{port}{REGISTRATION_PATH}"


async def read_one(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        response = await client.get(url)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"registered": False, "error": {"reason": "RegistrationUnknown", "message": f"{url}: {exc}"}}
    return data if isinstance(data, dict) else {"registered": False}


def summarize(states: Sequence[dict[str, Any]]) -> ConditionResult:
    """Pure policy: registered when every ready pod is; the first pod's error explains otherwise."""
    if not states:
        return ConditionResult("False", "WaitingForWorker", "no ready worker pod to heartbeat yet")
    registered = [s for s in states if s.get("registered") is True]
    errors: list[dict[str, Any]] = [
        s["error"] for s in states if s.get("registered") is not True and isinstance(s.get("error"), dict)
    ]
    total = len(states)
    if len(registered) == total:
        ids = ", ".join(sorted(str(s.get("runnerId", "")) for s in registered))
        return ConditionResult("True", "Registered", f"{total}/{total} pods heartbeating (runners {ids})")
    detail = f"{errors[0].get('reason')}: {errors[0].get('message')}" if errors else "registration pending"
    if registered:
        return ConditionResult(
            "True", "PartiallyRegistered", f"{len(registered)}/{total} pods heartbeating; {detail}"
        )
    reason = str(errors[0].get("reason") or "NotRegistered") if errors else "Pending"
    return ConditionResult("False", reason, f"0/{total} pods heartbeating; {detail}")


async def sync(view: CapabilityView, client: httpx.AsyncClient | None = None) -> ConditionResult:
    if not view.ready_pod_ips:
        return summarize(())
    port = view.spec.serving.port
    urls = [registration_url(ip, port) for ip in view.ready_pod_ips]
    own = client is None
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S))
    try:
        states = await asyncio.gather(*(read_one(http, u) for u in urls))
    finally:
        if own:
            await http.aclose()
    return summarize(states)
