"""Preflight of the weights claim against its StorageClass, as pure functions.

Kubernetes does not say which access modes a provisioner supports; a claim asking for one it
cannot give stays Pending forever with only a provisioner event to explain it. The provisioners
below create block devices or node-local paths (one node at a time), so a multi-node access mode
on them can never bind: the operator says so up front instead.
"""

from __future__ import annotations

from collections.abc import Iterable

SINGLE_NODE_PROVISIONERS: frozenset[str] = frozenset(
    {
        "ebs.csi.aws.com",
        "kubernetes.io/aws-ebs",
        "pd.csi.storage.gke.io",
        "kubernetes.io/gce-pd",
        "disk.csi.azure.com",
        "kubernetes.io/azure-disk",
        "cinder.csi.openstack.org",
        "kubernetes.io/cinder",
        "dobs.csi.digitalocean.com",
        "rancher.io/local-path",
        "kubernetes.io/no-provisioner",
        "topolvm.io",
    }
)
MULTI_NODE_MODES: frozenset[str] = frozenset({"ReadWriteMany", "ReadOnlyMany"})


def access_mode_problem(class_name: str, provisioner: str, access_modes: Iterable[str]) -> str | None:
    """Why the claim's access modes cannot work on this class, or None when they may."""
    multi_node = sorted(MULTI_NODE_MODES.intersection(access_modes))
    if not multi_node or provisioner not in SINGLE_NODE_PROVISIONERS:
        return None
    return (
        f"StorageClass {class_name!r} (provisioner {provisioner}) attaches a volume to one node at a "
        f"time and cannot provide {', '.join(multi_node)}; use ReadWriteOnce with replicas on one "
        "node, or a class backed by shared storage (NFS, CephFS, EFS, Filestore, Azure Files)"
    )
