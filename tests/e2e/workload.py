"""Reading the worker Deployment the operator wrote."""

from __future__ import annotations

from typing import Any


def adapter_capacity(deployment: dict[str, Any]) -> int | None:
    """The `--capacity` the worker Deployment passes to its adapter container."""
    for ctr in deployment["spec"]["template"]["spec"]["containers"]:
        argv = [*ctr.get("command", []), *ctr.get("args", [])]
        if "--capacity" in argv:
            return int(argv[argv.index("--capacity") + 1])
    return None
