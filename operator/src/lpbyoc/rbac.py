"""Every Kubernetes API call the operator makes, in one list.

The Helm chart's Role/ClusterRole is rendered from exactly this list (and a chart test
checks it), so the operator's privileges are the ones its code uses and nothing more.
Add a rule here in the same change that adds the call.
"""

from __future__ import annotations

from typing import NamedTuple


class Rule(NamedTuple):
    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str


RULES: tuple[Rule, ...] = (
    Rule(
        "livepeer.org",
        "livepeercapabilities",
        ("get", "list", "watch", "patch"),
        "watch capabilities; kopf adds finalizers and progress annotations",
    ),
    Rule(
        "livepeer.org",
        "livepeercapabilities/status",
        ("get", "patch"),
        "write conditions, phase and progress",
    ),
    Rule(
        "",
        "persistentvolumeclaims",
        ("list", "watch", "create", "patch"),
        "weights cache; it goes by ownerReference GC with its last user, never deleted by the operator",
    ),
    Rule(
        "batch",
        "jobs",
        ("list", "watch", "create", "patch", "delete"),
        "prefetch Jobs; a failed Job is deleted and retried",
    ),
    Rule(
        "apps",
        "deployments",
        ("list", "watch", "create", "patch", "delete"),
        "worker Deployments (deleted when the cached model cannot serve the capability)",
    ),
    Rule("", "services", ("list", "watch", "create", "patch"), "worker Services"),
    Rule("", "pods", ("list", "watch"), "scheduling failures (WaitingForGPU), prefetch progress and results"),
    Rule("", "configmaps", ("get", "create", "patch"), "aiModels.json per orchestrator"),
    Rule(
        "",
        "secrets",
        ("get", "create", "patch"),
        "read orchSecret, Hub and worker tokens by name (never listed); write aiModels.json as a "
        "Secret when its entries carry worker tokens",
    ),
    Rule("", "events", ("create",), "Events on Ready transitions and failures"),
    Rule("storage.k8s.io", "storageclasses", ("get",), "preflight: the requested StorageClass exists"),
)

# The orchestrator workload named by spec.orchestrator.workloadRef gets a checksum
# annotation on its pod template when aiModels.json changes.
WORKLOAD_RULES: tuple[Rule, ...] = (
    Rule("apps", "deployments", ("get", "patch"), "stamp aiModels.json checksum (aiModels mode)"),
    Rule("apps", "statefulsets", ("get", "patch"), "stamp aiModels.json checksum (aiModels mode)"),
)
# Cluster-scoped reads needed in any scope (granted by a ClusterRole): StorageClasses.
CLUSTER_SCOPED_RESOURCES: frozenset[tuple[str, str]] = frozenset({("storage.k8s.io", "storageclasses")})
# kopf's own peering/namespace needs in --all-namespaces mode: it lists namespaces.
ALL_NAMESPACES_RULES: tuple[Rule, ...] = (
    Rule("", "namespaces", ("list", "watch"), "kopf: discover namespaces with --all-namespaces"),
)
