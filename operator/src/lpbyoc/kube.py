"""The operator's Kubernetes client: plain dicts in and out, writes only when something differs.

`Kube` wraps lightkube's `AsyncClient`. Desired objects come from the pure builders as dicts;
`ensure` creates an object the reconcile did not observe and patches one only when
`needs_update` says a desired field differs. On a real cluster the patch is server-side
apply (field manager `lpbyoc`, forced: the operator owns its children's fields); against the
API double, which has no SSA, it is a JSON merge patch. Both are chosen by one setting.

Every write is counted by verb (`writes`), for the metrics and the benchmark.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.codecs import from_dict
from lightkube.config.kubeconfig import Cluster, SingleConfig, User
from lightkube.core.exceptions import ConfigError, LoadResourceError
from lightkube.core.resource import NamespacedResource
from lightkube.core.resource_registry import AnyResourceType, resource_registry
from lightkube.generic_resource import create_namespaced_resource
from lightkube.types import CascadeType, PatchType

from lpbyoc.settings import OperatorSettings, PatchStrategy
from lpbyoc.spec import GROUP, KIND, PLURAL, VERSION, SecretKeyRef

FIELD_MANAGER = "lpbyoc"
WriteVerb = Literal["create", "patch", "delete"]

logger = logging.getLogger(__name__)

# Registered once so that `from_dict` and the registry know the custom resource.
LivepeerCapabilityResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)


class KubeError(Exception):
    """An API call failed for a reason retrying the same call will not fix by itself."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def needs_update(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """True when some field of `desired` is absent from or different in `observed`.

    The server adds defaults and status, so `observed` may hold more: only the fields the
    operator sets are compared. Lists compare element by element with the same rule, so a
    container the server filled with defaults still matches the one the builder produced.
    """
    if observed is None:
        return True
    return not _is_subset(desired, observed)


def _is_subset(desired: Any, observed: Any) -> bool:
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return False
        return all(key in observed and _is_subset(value, observed[key]) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(desired) != len(observed):
            return False
        return all(_is_subset(d, o) for d, o in zip(desired, observed, strict=True))
    return bool(desired == observed)


def _status_code(exc: Exception) -> int | None:
    """HTTP status of a failed call: lightkube raises ApiError for a Status body it recognises,
    and the raw httpx error when the Content-Type carries a charset (as the API double's does)."""
    if isinstance(exc, ApiError):
        return int(exc.status.code or exc.response.status_code)
    if isinstance(exc, httpx2.HTTPStatusError):
        return int(exc.response.status_code)
    return None


def _error_message(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return str(exc.status.message or exc)
    if isinstance(exc, httpx2.HTTPStatusError):
        try:
            body = exc.response.json()
        except ValueError:
            return exc.response.text[:500]
        return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:500]
    return str(exc)


def resource_type(api_version: str, kind: str) -> AnyResourceType:
    try:
        return resource_registry.load(api_version, kind)
    except LoadResourceError as exc:
        raise KubeError(400, f"unknown resource {api_version} {kind}") from exc


def _to_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    result: dict[str, Any] = obj.to_dict()
    return result


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    meta = obj.get("metadata") or {}
    return str(obj["apiVersion"]), str(obj["kind"]), str(meta["name"]), meta.get("namespace")


def config_for(server: str | None = None, kubeconfig: str | None = None) -> KubeConfig:
    """A plain URL (tests, `--server`), a kubeconfig file, or the in-cluster service account
    with the usual kubeconfig fallback."""
    if server:
        return KubeConfig.from_one(cluster=Cluster(server=server), user=User())
    if kubeconfig:
        return KubeConfig.from_file(kubeconfig)
    try:
        return KubeConfig.from_service_account()
    except (ConfigError, OSError):
        return KubeConfig.from_env()


class Kube:
    """Dict-level API client; construct with `Kube.connect(...)` or around an AsyncClient."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        patch_strategy: PatchStrategy = "apply",
        on_write: Callable[[WriteVerb, str], None] | None = None,
    ) -> None:
        self._client = client
        self.patch_strategy: PatchStrategy = patch_strategy
        self.writes: Counter[str] = Counter()
        self._on_write = on_write

    @classmethod
    def connect(
        cls,
        *,
        server: str | None = None,
        kubeconfig: str | None = None,
        patch_strategy: PatchStrategy = "apply",
        on_write: Callable[[WriteVerb, str], None] | None = None,
        timeout_seconds: float = 10.0,
    ) -> Kube:
        config = config_for(server=server, kubeconfig=kubeconfig)
        client = AsyncClient(config, field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(timeout_seconds))
        return cls(client, patch_strategy=patch_strategy, on_write=on_write)

    @classmethod
    def from_settings(
        cls,
        settings: OperatorSettings,
        *,
        server: str | None = None,
        kubeconfig: str | None = None,
        on_write: Callable[[WriteVerb, str], None] | None = None,
    ) -> Kube:
        """A client writing the way the operator settings say (server-side apply or merge patch)."""
        return cls.connect(
            server=server, kubeconfig=kubeconfig, patch_strategy=settings.patch_strategy, on_write=on_write
        )

    @property
    def config(self) -> SingleConfig:
        return self._client.config

    def _count(self, verb: WriteVerb, kind: str) -> None:
        self.writes[verb] += 1
        if self._on_write is not None:
            self._on_write(verb, kind)

    async def close(self) -> None:
        await self._client.close()

    # -- reads ---------------------------------------------------------------------------------

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        res: Any = resource_type(api_version, kind)
        try:
            if issubclass(res, NamespacedResource):
                obj: Any = await self._client.get(res, name, namespace=namespace)
            else:
                obj = await self._client.get(res, name)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _status_code(exc) == 404:
                return None
            raise KubeError(_status_code(exc) or 500, _error_message(exc)) from exc
        return _to_dict(obj)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of a kind; `labels` are also matched here since the API double ignores selectors."""
        res: Any = resource_type(api_version, kind)
        wanted = dict(labels or {})
        result: list[dict[str, Any]] = []
        try:
            async for obj in self._client.list(res, namespace=namespace, labels=dict(wanted) or None):
                item = _to_dict(obj)
                have = (item.get("metadata") or {}).get("labels") or {}
                if all(have.get(k) == v for k, v in wanted.items()):
                    result.append(item)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            raise KubeError(_status_code(exc) or 500, _error_message(exc)) from exc
        return result

    async def read_secret(self, namespace: str, ref: SecretKeyRef) -> str | None:
        """The decoded value of one key of a Secret, or None when the Secret or key is absent.

        The value is never logged; callers must not log it either."""
        secret = await self.get("v1", "Secret", ref.name, namespace)
        if secret is None:
            return None
        encoded = (secret.get("data") or {}).get(ref.key)
        if encoded is None:
            plain = (secret.get("stringData") or {}).get(ref.key)
            return None if plain is None else str(plain)
        try:
            return base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            logger.warning("Secret %s/%s key %s is not valid base64 UTF-8", namespace, ref.name, ref.key)
            return None

    # -- writes --------------------------------------------------------------------------------

    async def create(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Create; raises KubeError (409 when it exists)."""
        obj: Any = from_dict(dict(desired))
        kind = str(desired["kind"])
        try:
            created = await self._client.create(obj)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            raise KubeError(_status_code(exc) or 500, _error_message(exc)) from exc
        self._count("create", kind)
        return _to_dict(created)

    async def ensure(
        self, desired: Mapping[str, Any], observed: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Make the object match `desired`, writing nothing when `observed` already does.

        `observed` is what the caller last saw (from a watch index); None means "not seen",
        and the object is created. Merge strategy: a create that finds the object already there
        (a stale index) reads it and patches only if it differs. The API double answers a
        PATCH of a missing object with an error, so creation is never "patch, then create".
        """
        if observed is not None and not needs_update(desired, observed):
            return dict(observed)
        api_version, kind, name, namespace = _identity(desired)
        if self.patch_strategy == "apply":
            return await self._apply(desired)
        if observed is None:
            try:
                return await self.create(desired)
            except KubeError as exc:
                if exc.status != 409:
                    raise
            observed = await self.get(api_version, kind, name, namespace)
            if observed is None:
                return await self.create(desired)
            if not needs_update(desired, observed):
                return dict(observed)
        return await self.patch_merge(api_version, kind, name, namespace, dict(desired))

    async def _apply(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        api_version, kind, name, namespace = _identity(desired)
        res: Any = resource_type(api_version, kind)
        try:
            obj = await self._client.patch(
                res,
                name,
                dict(desired),
                namespace=namespace,
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=True,
            )
        except (ApiError, httpx2.HTTPStatusError) as exc:
            raise KubeError(_status_code(exc) or 500, _error_message(exc)) from exc
        self._count("patch", kind)
        return _to_dict(obj)

    async def patch_merge(
        self, api_version: str, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """JSON merge patch of an existing object (null deletes a key, lists are replaced)."""
        return await self._patch(resource_type(api_version, kind), kind, name, namespace, patch)

    async def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch the status subresource with `{"status": status}`."""
        res: Any = resource_type(api_version, kind)
        status_res = getattr(res, "Status", None)
        if status_res is None:
            raise KubeError(400, f"{api_version} {kind} has no status subresource")
        return await self._patch(status_res, kind, name, namespace, {"status": dict(status)})

    async def _patch(
        self, res: Any, kind: str, name: str, namespace: str | None, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            if issubclass(res, NamespacedResource) or namespace is not None:
                obj: Any = await self._client.patch(
                    res, name, dict(patch), namespace=namespace, patch_type=PatchType.MERGE
                )
            else:
                obj = await self._client.patch(res, name, dict(patch), patch_type=PatchType.MERGE)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            raise KubeError(_status_code(exc) or 500, _error_message(exc)) from exc
        self._count("patch", kind)
        return _to_dict(obj)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete with background propagation (dependents go by GC); False when already gone."""
        res: Any = resource_type(api_version, kind)
        try:
            if issubclass(res, NamespacedResource):
                await self._client.delete(res, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
            else:
                await self._client.delete(res, name, cascade=CascadeType.BACKGROUND)
        except (ApiError, httpx2.HTTPStatusError) as exc:
            if _status_code(exc) == 404:
                return False
            raise KubeError(_status_code(exc) or 500, _error_message(exc)) from exc
        self._count("delete", kind)
        return True
