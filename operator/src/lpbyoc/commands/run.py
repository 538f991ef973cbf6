"""`lpbyoc run`: run the operator (kopf) against a cluster, with metrics and a liveness probe."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kopf
import yaml
from lightkube.core.exceptions import ConfigError

from lpbyoc import metrics
from lpbyoc.kube import Kube, config_for
from lpbyoc.operator_settings import RuntimeTuning
from lpbyoc.reconcile import Runtime
from lpbyoc.settings import OperatorSettings

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
logger = logging.getLogger("lpbyoc")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        metavar="NS",
        help="namespace to watch (repeatable); default: the pod's own namespace, else $POD_NAMESPACE, else 'default'",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="watch capabilities in every namespace"
    )
    parser.add_argument(
        "--server", help="API server URL without credentials (an API double or `kubectl proxy`)"
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: in-cluster service account, then $KUBECONFIG)"
    )
    parser.add_argument("--settings", type=Path, help="operator settings YAML (keys of OperatorSettings)")
    parser.add_argument(
        "--api-double",
        action="store_true",
        help="the server is an API double without server-side apply or namespace listing (merge patches)",
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0: off)")
    parser.add_argument(
        "--health-port", type=int, default=8081, help="liveness probe port, path /healthz (0: off)"
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=RuntimeTuning.resync_interval,
        help="seconds between resyncs of every capability",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def load_settings(path: Path | None, environ: dict[str, str] | None = None) -> OperatorSettings:
    """Environment (`LPBYOC_*`) first, then the settings file on top."""
    base = OperatorSettings.from_env(environ)
    if path is None:
        return base
    values: Any = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    merged = {**{k: getattr(base, k) for k in base.__dataclass_fields__}, **values}
    return OperatorSettings.from_mapping(merged)


def watched_namespaces(namespaces: Sequence[str] | None, environ: dict[str, str] | None = None) -> list[str]:
    if namespaces:
        return list(dict.fromkeys(namespaces))
    env = os.environ if environ is None else environ
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return [SERVICE_ACCOUNT_NAMESPACE.read_text().strip()]
    return [env.get("POD_NAMESPACE") or "default"]


async def serve(
    args: argparse.Namespace, settings: OperatorSettings, stop: asyncio.Event | None = None
) -> None:
    kube = Kube.from_settings(
        settings, server=args.server, kubeconfig=args.kubeconfig, on_write=metrics.count_write
    )
    runtime = Runtime(
        kube=kube, settings=settings, tuning=RuntimeTuning(resync_interval=args.resync_interval)
    )
    memo = kopf.Memo(runtime=runtime, server=args.server, api_double=args.api_double)
    import lpbyoc.handlers  # noqa: F401  (registers the handlers with kopf)

    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    try:
        if args.all_namespaces:
            await kopf.operator(
                clusterwide=True, standalone=True, memo=memo, liveness_endpoint=liveness, stop_flag=stop
            )
        else:
            namespaces = watched_namespaces(args.namespace)
            logger.info("watching namespaces: %s", ", ".join(namespaces))
            await kopf.operator(
                namespaces=namespaces, standalone=True, memo=memo, liveness_endpoint=liveness, stop_flag=stop
            )
    finally:
        await kube.close()


def run(args: argparse.Namespace) -> int:
    kopf.configure(debug=args.verbose, verbose=args.verbose)
    try:
        settings = load_settings(args.settings)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        logger.error("invalid operator settings: %s", exc)
        return 2
    if args.api_double and settings.patch_strategy != "merge":
        settings = OperatorSettings.from_mapping({**settings.__dict__, "patch_strategy": "merge"})
    try:
        config_for(server=args.server, kubeconfig=args.kubeconfig)
    except ConfigError as exc:
        logger.error(
            "no cluster to talk to (%s): run in a pod, set KUBECONFIG, or pass --server/--kubeconfig", exc
        )
        return 2
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    asyncio.run(serve(args, settings))
    return 0
