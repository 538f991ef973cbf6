"""Names, labels, hashes and paths of everything the operator creates (docs/architecture.md).

Every name is a pure function of the spec so that two operator replicas, a restart, or
`lpbyoc render` all arrive at the same objects.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from lpbyoc.spec import LivepeerCapabilitySpec

MANAGED_BY = "lpbyoc"
PART_OF = "livepeer-byoc"
CAPABILITY_LABEL = "livepeer.org/capability"
CACHE_KEY_LABEL = "livepeer.org/cache-key"
SERVING_HASH_ANNOTATION = "livepeer.org/serving-hash"
MODEL_REPO_ANNOTATION = "livepeer.org/model-repo"
MODEL_REVISION_ANNOTATION = "livepeer.org/model-revision"

CACHE_MOUNT = "/cache"
MODELS_MOUNT = "/models"
TRITON_MODEL_NAME = "model"
TRITON_GRPC = "127.0.0.1:8011"

_MAX_NAME = 63
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def h(*args: Any) -> str:
    """First 10 hex chars of sha256 over the compact, key-sorted JSON of the arguments."""
    payload = json.dumps(list(args), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:10]


def _bounded(prefix: str, name: str) -> str:
    """`prefix + name` as a DNS-1035 label: a hash suffix keeps long or dotted names unique."""
    candidate = prefix + name
    if len(candidate) <= _MAX_NAME and _NOT_DNS.search(name) is None:
        return candidate
    suffix = "-" + h(name)
    head = _NOT_DNS.sub("-", candidate.lower())[: _MAX_NAME - len(suffix)].rstrip("-")
    return head + suffix


def label_value(value: str) -> str:
    """A label value (at most 63 chars); longer values keep a prefix and gain a hash."""
    if len(value) <= _MAX_NAME:
        return value
    suffix = "-" + h(value)
    return value[: _MAX_NAME - len(suffix)].rstrip("-._") + suffix


def cache_key(spec: LivepeerCapabilitySpec) -> str:
    """Identity of the weights volume: one claim per (repo, storage class) or the named claim."""
    if spec.cache.existing_claim:
        return h(spec.cache.existing_claim)
    return h(spec.model.repo, spec.cache.storage_class_name)


def cache_claim_name(spec: LivepeerCapabilitySpec) -> str:
    return spec.cache.existing_claim or f"lpbyoc-cache-{cache_key(spec)}"


def prefetch_job_name(spec: LivepeerCapabilitySpec) -> str:
    model = spec.model
    parts: list[Any] = [
        cache_claim_name(spec),
        model.repo,
        model.revision,
        list(model.allow_patterns),
        list(model.ignore_patterns),
    ]
    if model.variant:  # another file selection; without one, names stay what they were
        parts.append(model.variant)
    return f"lpbyoc-prefetch-{h(*parts)}"


def worker_name(cr_name: str) -> str:
    """Name of the worker Deployment and its Service."""
    return _bounded("lpbyoc-", cr_name)


def repo_dir(repo: str) -> str:
    """`owner--name` for `owner/name`, `name` alone for a repo id without owner."""
    return repo.replace("/", "--")


def weights_dir(repo: str, sha: str) -> str:
    return f"{CACHE_MOUNT}/models/{repo_dir(repo)}/{sha}"


def endpoint(cr_name: str, namespace: str, port: int, cluster_domain: str) -> str:
    return f"http://{worker_name(cr_name)}.{namespace}.svc.{cluster_domain}:{port}"


def common_labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/component": component,
    }


def capability_labels(cr_name: str, component: str) -> dict[str, str]:
    """Labels of per-capability children."""
    value = label_value(cr_name)
    return {
        **common_labels(component),
        "app.kubernetes.io/instance": value,
        CAPABILITY_LABEL: value,
    }


def cache_labels(spec: LivepeerCapabilitySpec, component: str) -> dict[str, str]:
    """Labels of shared cache children (PVC, prefetch Job)."""
    return {**common_labels(component), CACHE_KEY_LABEL: cache_key(spec)}


def worker_selector_labels(cr_name: str) -> dict[str, str]:
    value = label_value(cr_name)
    return {"app.kubernetes.io/component": "worker", CAPABILITY_LABEL: value}


def worker_selector(cr_name: str) -> str:
    """`status.selector` for the scale subresource (label selector in string form)."""
    return ",".join(f"{k}={v}" for k, v in sorted(worker_selector_labels(cr_name).items()))
