"""`lpbyoc render`: every object the operator would apply for some capabilities, no cluster.

It assumes what only a cluster can tell: the weights are cached, every replica is ready,
and a branch/tag revision resolved to a commit (shown as `UNRESOLVED_SHA`, with a comment).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from lpbyoc import naming
from lpbyoc.builders import BuildContext, build_children, largest_quantity
from lpbyoc.settings import OperatorSettings
from lpbyoc.spec import KIND, LivepeerCapabilitySpec
from lpbyoc.validation import SpecError, validate_capability
from lpbyoc.view import CapabilityView

UNRESOLVED_SHA = "REVISION-RESOLVED-AT-RUN-TIME"
PLACEHOLDER_UID = "UID-ASSIGNED-BY-API-SERVER"
SHA_LENGTH = 40


@dataclass(frozen=True)
class Capability:
    """One validated CR to render."""

    namespace: str
    name: str
    uid: str
    spec: LivepeerCapabilitySpec
    source: str = ""


@dataclass(frozen=True)
class RenderedObject:
    obj: dict[str, Any]
    comment: str = ""


def is_commit_sha(revision: str) -> bool:
    return len(revision) == SHA_LENGTH and all(c in "0123456789abcdef" for c in revision)


def load_documents(text: str) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a (multi-document) stream; anything but a mapping is an error."""
    docs = []
    for index, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SpecError([f"document {index + 1}: expected a YAML mapping, got {type(doc).__name__}"])
        docs.append(doc)
    return docs


def parse_capabilities(
    documents: Iterable[tuple[str, Mapping[str, Any]]], default_namespace: str = "default"
) -> list[Capability]:
    """Validate every (source, body) pair as the API server would; one SpecError lists all problems."""
    capabilities: list[Capability] = []
    errors: list[str] = []
    for source, body in documents:
        metadata = body.get("metadata") or {}
        label = f"{source}: {body.get('kind', '?')} {metadata.get('name', '?')!r}"
        if body.get("kind") != KIND:
            errors.append(f"{label}: not a {KIND}")
            continue
        try:
            spec = validate_capability(body)
        except SpecError as exc:
            errors += [f"{label}: {message}" for message in exc.errors]
            continue
        capabilities.append(
            Capability(
                namespace=str(metadata.get("namespace") or default_namespace),
                name=str(metadata["name"]),
                uid=str(metadata.get("uid") or PLACEHOLDER_UID),
                spec=spec,
                source=source,
            )
        )
    if errors:
        raise SpecError(errors)
    return capabilities


def _ids(caps: Iterable[Capability]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((c.name, c.uid) for c in caps))


def _group_by(
    caps: Sequence[Capability], key: Callable[[LivepeerCapabilitySpec], str]
) -> dict[tuple[str, str], list[Capability]]:
    groups: dict[tuple[str, str], list[Capability]] = {}
    for cap in caps:
        groups.setdefault((cap.namespace, key(cap.spec)), []).append(cap)
    return groups


def build_contexts(caps: Sequence[Capability], settings: OperatorSettings) -> list[BuildContext]:
    """What the operator would know about each capability with all of `caps` in the cluster."""
    by_claim = _group_by(caps, naming.cache_claim_name)
    by_job = _group_by(caps, naming.prefetch_job_name)
    contexts = []
    for cap in caps:
        claim_users = by_claim[(cap.namespace, naming.cache_claim_name(cap.spec))]
        revision = cap.spec.model.revision
        contexts.append(
            BuildContext(
                namespace=cap.namespace,
                name=cap.name,
                uid=cap.uid,
                spec=cap.spec,
                resolved_revision=revision if is_commit_sha(revision) else UNRESOLVED_SHA,
                cache_users=_ids(claim_users),
                prefetch_users=_ids(by_job[(cap.namespace, naming.prefetch_job_name(cap.spec))]),
                retain_cache=any(c.spec.cache.retain_on_delete for c in claim_users),
                cache_size=largest_quantity(c.spec.cache.size for c in claim_users),
                settings=settings,
            )
        )
    return contexts


def _aimodels_objects(caps: Sequence[Capability], settings: OperatorSettings) -> list[dict[str, Any]]:
    """aiModels.json objects, when the orchestrator module provides them (optional dependency)."""
    try:
        module = importlib.import_module("lpbyoc.orchestrator.aimodels")
    except ImportError:
        return []
    render_configmaps = getattr(module, "render_configmaps", None)
    if render_configmaps is None:
        return []
    views = [
        CapabilityView(
            namespace=c.namespace,
            name=c.name,
            uid=c.uid,
            spec=c.spec,
            ready_replicas=c.spec.replicas,
            worker_available=c.spec.replicas > 0,
            endpoint=naming.endpoint(c.name, c.namespace, c.spec.serving.port, settings.cluster_domain),
            resolved_revision=c.spec.model.revision,
        )
        for c in caps
    ]
    return list(render_configmaps(views))


def render_objects(caps: Sequence[Capability], settings: OperatorSettings) -> list[RenderedObject]:
    """Every child in apply order; shared children (one cache for several CRs) appear once."""
    seen: set[tuple[str, str, str]] = set()
    rendered: list[RenderedObject] = []
    for cap, ctx in zip(caps, build_contexts(caps, settings), strict=True):
        for obj in build_children(ctx, weights_ready=True):
            key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
            if key in seen:
                continue
            seen.add(key)
            comment = f"{cap.source}: {KIND} {cap.namespace}/{cap.name}"
            if obj["kind"] == "Deployment" and ctx.resolved_revision == UNRESOLVED_SHA:
                comment += (
                    f"\n{UNRESOLVED_SHA}: the operator resolves revision {cap.spec.model.revision!r}"
                    " to a commit SHA at run time (the prefetch Job reports it)"
                )
            rendered.append(RenderedObject(obj, comment))
    rendered += [
        RenderedObject(obj, "aiModels.json for the orchestrator") for obj in _aimodels_objects(caps, settings)
    ]
    return rendered


def to_yaml(rendered: Sequence[RenderedObject]) -> str:
    parts = []
    for item in rendered:
        comment = "".join(f"# {line}\n" for line in item.comment.splitlines())
        parts.append("---\n" + comment + yaml.safe_dump(item.obj, sort_keys=False, width=100000))
    return "".join(parts)


def render_files(paths: Sequence[str], settings: OperatorSettings, default_namespace: str = "default") -> str:
    documents: list[tuple[str, Mapping[str, Any]]] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        try:
            docs = load_documents(text)
        except yaml.YAMLError as exc:
            raise SpecError([f"{path}: not valid YAML: {exc}"]) from None
        except SpecError as exc:
            raise SpecError([f"{path}: {message}" for message in exc.errors]) from None
        documents += [(path, doc) for doc in docs]
    return to_yaml(render_objects(parse_capabilities(documents, default_namespace), settings))
