"""The capability the e2e suite applies: an example from examples/, pointed at this cluster.

Also a command line for `make deploy`:
  python -m tests.e2e.manifests examples/byoc-image-restyle.yaml --orchestrator-url URL | kubectl apply -f -
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from lpbyoc.spec import parse_spec


def load_example(path: str | Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    caps = [d for d in docs if d.get("kind") == "LivepeerCapability"]
    if len(caps) != 1:
        raise ValueError(f"{path}: expected one LivepeerCapability, found {len(caps)}")
    return caps[0]


def e2e_capability(
    example: dict[str, Any],
    *,
    name: str | None = None,
    orchestrator_url: str | None = None,
    orchestrator_name: str | None = None,
    secret_name: str | None = None,
    secret_key: str | None = None,
    gpu_count: int | None = None,
    replicas: int | None = None,
    model_repo: str | None = None,
) -> dict[str, Any]:
    """A copy of `example` with the cluster-specific fields replaced; the result must still
    parse as a spec (so the e2e suite never applies something the API server would reject)."""
    cap = copy.deepcopy(example)
    cap["metadata"] = {"name": name or example["metadata"]["name"]}
    spec = cap["spec"]
    orch = spec.setdefault("orchestrator", {})
    if orchestrator_url is not None:
        orch["url"] = orchestrator_url
    if orchestrator_name is not None:
        orch["name"] = orchestrator_name
    if secret_name is not None or secret_key is not None:
        ref = orch.setdefault("secretRef", {})
        ref["name"] = secret_name or ref.get("name")
        ref["key"] = secret_key or ref.get("key")
    if gpu_count is not None:
        spec.setdefault("gpu", {})["count"] = gpu_count
    if replicas is not None:
        spec["replicas"] = replicas
    if model_repo is not None:
        spec["model"]["repo"] = model_repo
    parse_spec(spec)
    return cap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print an example capability pointed at this cluster")
    parser.add_argument("example")
    parser.add_argument("--orchestrator-url")
    parser.add_argument("--orchestrator-name")
    parser.add_argument("--secret-name")
    parser.add_argument("--secret-key")
    parser.add_argument("--replicas", type=int)
    args = parser.parse_args(argv)
    cap = e2e_capability(
        load_example(args.example),
        orchestrator_url=args.orchestrator_url,
        orchestrator_name=args.orchestrator_name,
        secret_name=args.secret_name,
        secret_key=args.secret_key,
        replicas=args.replicas,
    )
    yaml.safe_dump(cap, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
