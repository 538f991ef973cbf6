"""Operator-wide settings: one frozen value built once at startup (or from a render flag)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

DEFAULT_WORKER_IMAGE = "ghcr.io/livepeer-byoc/worker:0.1.0"

PatchStrategy = Literal["apply", "merge"]
TritonKindSetting = Literal["auto", "KIND_CPU"]


@dataclass(frozen=True)
class OperatorSettings:
    worker_image: str = DEFAULT_WORKER_IMAGE
    # The prefetcher is a subcommand of the worker image: one image to build, scan and pull.
    prefetch_image: str = DEFAULT_WORKER_IMAGE
    hf_endpoint: str | None = None
    progress_port: int = 9090
    cluster_domain: str = "cluster.local"
    prefetch_stall_timeout_s: int = 60
    prefetch_max_retries: int = 5
    # "apply" = server-side apply on a real cluster; "merge" = create/merge-patch for API doubles.
    patch_strategy: PatchStrategy = "apply"
    # "auto": Triton instances on the GPU when the capability asks for one. "KIND_CPU": always on
    # the CPU, for clusters that advertise fake GPUs (kind without a GPU) so scheduling is exercised.
    triton_kind: TritonKindSetting = "auto"

    def __post_init__(self) -> None:
        if self.patch_strategy not in ("apply", "merge"):
            raise ValueError(f"patch_strategy must be 'apply' or 'merge', not {self.patch_strategy!r}")
        if self.triton_kind not in ("auto", "KIND_CPU"):
            raise ValueError(f"triton_kind must be 'auto' or 'KIND_CPU', not {self.triton_kind!r}")
        for name in ("progress_port", "prefetch_stall_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.prefetch_max_retries < 0:
            raise ValueError("prefetch_max_retries must be >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> OperatorSettings:
        """Build from a dict (a settings YAML file); unknown keys are errors, not silently ignored."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown operator settings: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            kwargs[key] = int(value) if known[key].type == "int" else value
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read `LPBYOC_<FIELD>` variables (e.g. LPBYOC_HF_ENDPOINT); absent ones keep defaults."""
        env = os.environ if environ is None else environ
        values = {
            f.name: env[f"LPBYOC_{f.name.upper()}"] for f in fields(cls) if f"LPBYOC_{f.name.upper()}" in env
        }
        if "worker_image" in values and "prefetch_image" not in values:
            values["prefetch_image"] = values["worker_image"]
        return cls.from_mapping(values)
