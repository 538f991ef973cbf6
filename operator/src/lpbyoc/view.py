"""Plain values that cross module boundaries inside the operator.

`CapabilityView` is what the reconcile knows about one capability at one moment: its parsed
spec plus what it observed of its children. `ConditionResult` is what a policy function
returns for one status condition. Both are immutable and free of API clients so that the
functions taking them stay pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lpbyoc.spec import LivepeerCapabilitySpec

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionResult:
    status: ConditionStatus
    reason: str
    message: str = ""


@dataclass(frozen=True)
class CapabilityView:
    namespace: str
    name: str
    uid: str
    spec: LivepeerCapabilitySpec
    creation_timestamp: str = ""
    # Observed state (filled by the reconcile from the children it sees).
    ready_replicas: int = 0
    worker_available: bool = False  # WorkerAvailable condition is True
    endpoint: str = ""  # http://<service>.<ns>.svc.cluster.local:<port>
    resolved_revision: str = ""
    ready_pod_ips: tuple[str, ...] = ()  # worker pods that pass readiness (liveRunner reads them)
    deleting: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def capacity(self) -> int:
        """What the orchestrator may send at once: ready replicas x capacity per replica."""
        return self.ready_replicas * self.spec.capacity_per_replica
