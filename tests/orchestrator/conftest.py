"""Fixtures for the orchestrator attachment: the API double (kmock), a Kube on it, capability bodies,
views, and the orchestrator double (plain HTTP and TLS)."""

from __future__ import annotations

import base64
import copy
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import trustme
from lpbyoc.kube import Kube
from lpbyoc.spec import GROUP, PLURAL, VERSION, parse_spec
from lpbyoc.view import CapabilityView

from tests.support.orchestrator_double import OrchestratorDouble

NAMESPACE = "ml"
CR_RESOURCE = f"{GROUP}/{VERSION}/{PLURAL}"


def cr_body(name: str, **spec_changes: Any) -> dict[str, Any]:
    """An aiModels capability body; keyword changes are dotted spec paths with `__` for dots."""
    spec: dict[str, Any] = {
        "capability": {"name": name, "integration": "aiModels", "pipeline": "image-to-image"},
        "model": {"repo": f"org/{name}"},
        "orchestrator": {"name": "orch-a", "workloadRef": {"kind": "Deployment", "name": "go-livepeer"}},
        "replicas": 1,
        "capacityPerReplica": 2,
        "pricing": {"pricePerUnit": 1000, "pixelsPerUnit": 1},
    }
    for dotted, value in spec_changes.items():
        *parents, leaf = dotted.split("__")
        node = spec
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LivepeerCapability",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": f"2026-11-23T10:00:{sum(map(ord, name)) % 50:02d}Z",
        },
        "spec": spec,
    }


def with_status(
    body: dict[str, Any], *, ready: int, available: bool = True, port: int = 8000
) -> dict[str, Any]:
    out = copy.deepcopy(body)
    name = out["metadata"]["name"]
    out["status"] = {
        "readyReplicas": ready,
        "endpoint": f"http://lpbyoc-{name}.{NAMESPACE}.svc.cluster.local:{port}",
        "conditions": [
            {"type": "WorkerAvailable", "status": "True" if available else "False", "reason": "x"}
        ],
    }
    return out


def view_of(
    body: dict[str, Any],
    *,
    ready: int = 1,
    available: bool = True,
    endpoint: str | None = None,
    pod_ips: tuple[str, ...] = (),
) -> CapabilityView:
    meta = body["metadata"]
    spec = parse_spec(body["spec"])
    return CapabilityView(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        spec=spec,
        creation_timestamp=meta.get("creationTimestamp", ""),
        ready_replicas=ready,
        worker_available=available,
        endpoint=endpoint
        if endpoint is not None
        else f"http://lpbyoc-{meta['name']}.{meta['namespace']}.svc.cluster.local:{spec.serving.port}",
        ready_pod_ips=pod_ips,
    )


def secret_body(name: str, data: dict[str, str], namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@pytest.fixture
def kmock_api(kmock: Any) -> Any:
    """The Kubernetes API double with the built-in kinds and the capability CRD declared."""
    kmock.resources.load_bundled()
    kmock.resources[CR_RESOURCE] = {
        "kind": "LivepeerCapability",
        "namespaced": True,
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
        "subresources": ["status"],
    }
    return kmock


@pytest_asyncio.fixture
async def kube(kmock_api: Any) -> AsyncIterator[Kube]:
    client = Kube.connect(server=str(kmock_api.url), patch_strategy="merge")
    try:
        yield client
    finally:
        await client.close()


def put(kmock_api: Any, resource: str, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    kmock_api.objects[resource, meta.get("namespace"), meta["name"]] = obj


@pytest_asyncio.fixture
async def orch() -> AsyncIterator[OrchestratorDouble]:
    double = await OrchestratorDouble(secret="s3cret-orch").start()
    try:
        yield double
    finally:
        await double.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest_asyncio.fixture
async def tls_orch(ca: trustme.CA) -> AsyncIterator[OrchestratorDouble]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    double = await OrchestratorDouble(secret="s3cret-orch", ssl_context=server_ctx).start()
    try:
        yield double
    finally:
        await double.close()
