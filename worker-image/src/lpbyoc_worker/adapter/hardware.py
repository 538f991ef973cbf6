"""GPU facts for `/hardware/info` and `/hardware/stats` (ai-runner's shapes), read through NVML.

pynvml is imported lazily and a failed NVML init is remembered: a CPU-only worker answers
`{"gpu_info": {}}` without paying for a retry on every call.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class GpuReader:
    def __init__(self) -> None:
        self._nvml: Any = None
        self._tried = False

    def _module(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                self._nvml = pynvml
            except Exception as exc:  # no library, no driver, no GPU: all mean "no GPU data"
                log.info("no GPU information (NVML unavailable: %s)", exc)
        return self._nvml

    def _devices(self) -> list[tuple[int, Any, Any]]:
        nvml = self._module()
        if nvml is None:
            return []
        try:
            return [(i, nvml, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(nvml.nvmlDeviceGetCount())]
        except Exception as exc:
            log.warning("NVML device query failed: %s", exc)
            return []

    @staticmethod
    def _base(nvml: Any, handle: Any) -> dict[str, Any]:
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        name = nvml.nvmlDeviceGetName(handle)
        uuid = nvml.nvmlDeviceGetUUID(handle)
        return {
            "id": uuid.decode() if isinstance(uuid, bytes) else str(uuid),
            "name": name.decode() if isinstance(name, bytes) else str(name),
            "memory_total": int(memory.total),
            "memory_free": int(memory.free),
        }

    def info(self) -> dict[str, dict[str, Any]]:
        """`{"0": {id, name, memory_total, memory_free, major, minor}}` (GPUComputeInfo)."""
        out: dict[str, dict[str, Any]] = {}
        for index, nvml, handle in self._devices():
            try:
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
                out[str(index)] = {**self._base(nvml, handle), "major": int(major), "minor": int(minor)}
            except Exception as exc:
                log.warning("NVML query of GPU %d failed: %s", index, exc)
        return out

    def stats(self) -> dict[str, dict[str, Any]]:
        """`{"0": {id, name, memory_total, memory_free, utilization_compute, utilization_memory}}`."""
        out: dict[str, dict[str, Any]] = {}
        for index, nvml, handle in self._devices():
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                out[str(index)] = {
                    **self._base(nvml, handle),
                    "utilization_compute": int(rates.gpu),
                    "utilization_memory": int(rates.memory),
                }
            except Exception as exc:
                log.warning("NVML query of GPU %d failed: %s", index, exc)
        return out
