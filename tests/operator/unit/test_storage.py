"""The weights claim's access modes against its StorageClass's provisioner (pure)."""

from __future__ import annotations

import pytest
from lpbyoc.storage import access_mode_problem


@pytest.mark.parametrize(
    ("provisioner", "modes", "unsupported"),
    [
        ("ebs.csi.aws.com", ["ReadWriteMany"], True),
        ("rancher.io/local-path", ["ReadWriteOnce", "ReadOnlyMany"], True),
        ("pd.csi.storage.gke.io", ["ReadWriteOnce"], False),
        ("ebs.csi.aws.com", ["ReadWriteOncePod"], False),
        ("efs.csi.aws.com", ["ReadWriteMany"], False),
        ("nfs.csi.k8s.io", ["ReadWriteMany", "ReadOnlyMany"], False),
        ("example.com/unknown", ["ReadWriteMany"], False),  # unknown: let the provisioner decide
    ],
)
def test_multi_node_modes_on_single_node_provisioners(
    provisioner: str, modes: list[str], unsupported: bool
) -> None:
    problem = access_mode_problem("fast", provisioner, modes)
    assert (problem is not None) is unsupported
    if problem:
        assert "'fast'" in problem and provisioner in problem
        assert all(m in problem for m in modes if m in ("ReadWriteMany", "ReadOnlyMany"))
