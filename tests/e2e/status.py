"""Reading a LivepeerCapability's status the way the e2e assertions need it."""

from __future__ import annotations

from typing import Any


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def condition_is(obj: dict[str, Any], kind: str, status: str, reason: str | None = None) -> bool:
    cond = condition(obj, kind)
    return (
        cond is not None and cond.get("status") == status and (reason is None or cond.get("reason") == reason)
    )


def observed_current_generation(obj: dict[str, Any]) -> bool:
    """Status describes the latest spec (a change is not judged on the previous one's status)."""
    generation = obj.get("metadata", {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    return generation is None or observed == generation


def is_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return (
        status.get("phase") == "Ready"
        and condition_is(obj, "Ready", "True")
        and observed_current_generation(obj)
    )


def is_waiting_for_gpu(obj: dict[str, Any]) -> bool:
    """The worker cannot be scheduled: the GPU request exceeds what any node has."""
    return any(condition_is(obj, kind, "False", "WaitingForGPU") for kind in ("WorkerAvailable", "Ready"))


def has_failed(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") == "Failed"


def describe(obj: dict[str, Any] | None) -> str:
    """One line per condition, for assertion and timeout messages."""
    if obj is None:
        return "<object not found>"
    status = obj.get("status") or {}
    lines = [f"phase={status.get('phase')!r} readyReplicas={status.get('readyReplicas')!r}"]
    for cond in status.get("conditions") or []:
        lines.append(
            f"  {cond.get('type')}={cond.get('status')} {cond.get('reason')}: {cond.get('message', '')}"
        )
    return "\n".join(lines)
