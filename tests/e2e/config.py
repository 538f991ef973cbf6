"""Where the e2e suite runs, from LPBYOC_E2E_* variables (`make test-e2e` sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class E2EConfig:
    cluster: str = "lpbyoc"
    context: str = "kind-lpbyoc"
    namespace: str = "lpbyoc-e2e"
    # The chart release installed by `make deploy` in `namespace` (operator + orchestrator).
    release: str = "lpbyoc"
    example: str = "examples/byoc-image-restyle.yaml"
    orchestrator_url: str = ""
    # A model repo reachable from the cluster; empty keeps the example's.
    model_repo: str = ""
    # Weights download + Triton load on a fresh cluster take minutes.
    ready_timeout: float = 900.0
    wait_for_gpu_timeout: float = 180.0

    @property
    def orchestrator(self) -> str:
        """The chart's orchestrator Service unless LPBYOC_E2E_ORCHESTRATOR_URL says otherwise."""
        if self.orchestrator_url:
            return self.orchestrator_url
        service = f"{self.release}-livepeer-byoc-operator-orchestrator"
        return f"https://{service}.{self.namespace}.svc.cluster.local:8935"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> E2EConfig:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, default in cls.__dataclass_fields__.items():
            raw = env.get(f"LPBYOC_E2E_{name.upper()}")
            if raw is None:
                continue
            try:
                values[name] = float(raw) if isinstance(default.default, float) else raw
            except ValueError:
                raise ValueError(
                    f"LPBYOC_E2E_{name.upper()} must be a number of seconds, not {raw!r}"
                ) from None
        return cls(**values)  # type: ignore[arg-type]
