"""Status conditions as the API stores them: stable order, transitions kept, no-op writes avoided."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from lpbyoc.view import ConditionResult

SPEC_VALID = "SpecValid"
WEIGHTS_CACHED = "WeightsCached"
WORKER_AVAILABLE = "WorkerAvailable"
REGISTERED = "Registered"
READY = "Ready"
CONDITION_TYPES: tuple[str, ...] = (SPEC_VALID, WEIGHTS_CACHED, WORKER_AVAILABLE, REGISTERED, READY)


def format_time(now: datetime | str) -> str:
    if isinstance(now, str):
        return now
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(
    old: Sequence[Mapping[str, Any]] | None,
    new: Mapping[str, ConditionResult],
    observed_generation: int,
    now: datetime | str,
) -> list[dict[str, Any]]:
    """The condition list to store: `lastTransitionTime` moves only when a status flips.

    Conditions of types this operator does not compute (written by someone else) are kept
    after ours, unchanged.
    """
    previous = {c.get("type"): c for c in old or ()}
    stamp = format_time(now)
    order = [t for t in CONDITION_TYPES if t in new] + sorted(t for t in new if t not in CONDITION_TYPES)
    merged: list[dict[str, Any]] = []
    for cond_type in order:
        result = new[cond_type]
        before = previous.get(cond_type)
        flipped = (
            before is None or before.get("status") != result.status or not before.get("lastTransitionTime")
        )
        merged.append(
            {
                "type": cond_type,
                "status": result.status,
                "reason": result.reason,
                "message": result.message,
                "lastTransitionTime": stamp if flipped else before["lastTransitionTime"],  # type: ignore[index]
                "observedGeneration": observed_generation,
            }
        )
    merged += [dict(c) for t, c in previous.items() if t not in new]
    return merged


def find(conditions: Sequence[Mapping[str, Any]] | None, cond_type: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == cond_type), None)


def status_patch(
    old_status: Mapping[str, Any] | None, new_status: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A JSON merge patch turning `old_status` into `new_status`, or None when they already agree.

    Keys missing from `new_status` are removed (null); nested objects are diffed key by key;
    lists are replaced whole, as merge patch does. None is what makes an idle resync write nothing.
    """
    patch = _diff(old_status or {}, new_status)
    return patch or None


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = _diff(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
