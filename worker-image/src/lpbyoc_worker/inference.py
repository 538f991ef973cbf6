"""Async client for the Triton server next to the adapter: binary tensors, typed errors.

Transport: gRPC (`tritonclient.grpc.aio`) with the tensors in system shared memory, by default.
Measured on the 2-core CPU dev machine with bench/bench_triton.py (tiny 3x3 conv on the python
backend, one client, batch 1 fp32, p50 of 100 interleaved calls, load average about 1):
    frame     http.aio     grpc.aio     grpc.aio + shared memory     (module in-process)
    64²       2.8 ms       1.5 ms       1.0 ms                       0.3 ms
    256²      36 ms        8.1 ms       4.0 ms                       0.8 ms
    512²      127 ms       13.4 ms      7.5 ms                       2.2 ms
Under load every number grows; the order stays. Shared memory needs /dev/shm shared by the
adapter and Triton (in the pod: one memory emptyDir mounted at /dev/shm in both containers); when
Triton cannot open the regions, or keeps failing with them, the client falls back to plain gRPC.
`protocol="http"` remains for comparison.

Errors callers can act on:
- `TritonUnavailable`: cannot reach Triton, or the model is not loaded/ready (→ 503, retry later);
- `InvalidInput`: the tensor does not fit the model's config (→ 400), checked before sending;
- `InferenceFailed`: Triton answered the request with an error; carries Triton's message (→ 500).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing import shared_memory
from types import TracebackType
from typing import Any, Literal

import numpy as np
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

Protocol = Literal["grpc", "http"]
log = logging.getLogger(__name__)


# Triton is on loopback: reconnect quickly once it is back (gRPC's default backoff grows to 120 s;
# measured here after a 30 s outage: ready again 5.8 s after Triton was, vs at once with these caps).
GRPC_CHANNEL_ARGS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


class TritonError(Exception):
    """Base of the errors raised by `TritonInference`."""


class TritonUnavailable(TritonError):
    """Triton cannot be reached, timed out, or does not have the model ready."""


class InferenceFailed(TritonError):
    """Triton rejected or failed the request; the message is Triton's."""


class InvalidInput(TritonError, ValueError):
    """The input does not match the model's configured tensors."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str  # Triton's wire name: FP32, UINT8, ...
    dims: tuple[int, ...]  # without the batch dimension when the model batches

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(triton_to_np_dtype(self.datatype))


@dataclass(frozen=True)
class ModelSignature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch_size: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSignature:
        """From Triton's model config as JSON (`get_model_config`), where data types read `TYPE_FP32`."""

        def tensors(key: str) -> tuple[TensorInfo, ...]:
            return tuple(
                TensorInfo(
                    name=t["name"],
                    # The config says TYPE_STRING where the wire (and tritonclient) says BYTES.
                    datatype=str(t.get("data_type", "TYPE_FP32"))
                    .removeprefix("TYPE_")
                    .replace("STRING", "BYTES"),
                    dims=tuple(int(d) for d in t.get("dims", [])),
                )
                for t in config.get(key, [])
            )

        return cls(
            inputs=tensors("input"),
            outputs=tensors("output"),
            max_batch_size=int(config.get("max_batch_size", 0)),
        )

    def check_input(self, info: TensorInfo, array: np.ndarray) -> np.ndarray:
        """The array converted to the input's dtype, or InvalidInput saying what does not fit."""
        batched = self.max_batch_size > 0
        expected_rank = len(info.dims) + (1 if batched else 0)
        if array.ndim != expected_rank:
            layout = "[batch, " + ", ".join(map(str, info.dims)) + "]" if batched else str(list(info.dims))
            raise InvalidInput(
                f"input {info.name} needs {expected_rank} dimensions {layout}, got shape {list(array.shape)}"
            )
        if batched and not 1 <= array.shape[0] <= self.max_batch_size:
            raise InvalidInput(f"batch size {array.shape[0]} is outside 1..{self.max_batch_size}")
        shape = array.shape[1:] if batched else array.shape
        for axis, (want, got) in enumerate(zip(info.dims, shape, strict=True)):
            if want != -1 and want != got:
                raise InvalidInput(f"input {info.name} dimension {axis} must be {want}, got {got}")
            if got == 0:
                raise InvalidInput(f"input {info.name} dimension {axis} is empty")
        if array.dtype != info.dtype:
            # Widening (uint8 → fp32) is fine; anything that could lose values is the caller's decision.
            if not np.can_cast(array.dtype, info.dtype, casting="same_kind"):
                raise InvalidInput(
                    f"input {info.name} is {info.datatype}; cannot convert {array.dtype} without loss"
                )
            array = array.astype(info.dtype)
        return np.ascontiguousarray(array)


def _is_unavailable(status: str | None, message: str) -> bool:
    text = message.lower()
    if status in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED", "503"):
        return True
    # Unknown/unloaded model: NOT_FOUND over gRPC, 400 over HTTP.
    return "unknown model" in text or "is not ready" in text or ("not found" in text and "model" in text)


def _map_error(exc: InferenceServerException) -> TritonError:
    status = exc.status()
    message = exc.message() or str(exc)
    if _is_unavailable(status, message):
        return TritonUnavailable(f"Triton unavailable: {message}")
    if status in ("StatusCode.INVALID_ARGUMENT", "400"):
        return InvalidInput(message)
    return InferenceFailed(message)


# Output regions are this many times the input's size: tmpfs pages cost memory only once written,
# and a model may return more bytes than it took (upscalers, uint8 in / fp32 out).
OUTPUT_REGION_FACTOR = 4
MIN_REGION_BYTES = 1 << 20
SHM_FAILURES_BEFORE_GIVING_UP = 3


class _Region:
    """One POSIX shared memory object, known to Triton as `name`."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.memory = shared_memory.SharedMemory(name=name, create=True, size=size)
        self.size = size

    @property
    def key(self) -> str:
        return f"/{self.memory.name}"

    def write(self, array: np.ndarray) -> None:
        np.ndarray(array.shape, array.dtype, buffer=self.memory.buf)[...] = array

    def read(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        # Copied out: the region is reused by the next request as soon as this one returns.
        return np.ndarray(shape, dtype, buffer=self.memory.buf).copy()

    def destroy(self) -> None:
        self.memory.close()
        with contextlib.suppress(FileNotFoundError):
            self.memory.unlink()


@dataclass
class _Slot:
    """An input and an output region for one in-flight request."""

    input: _Region
    output: _Region
    registered_generation: int = -1


class _SharedMemoryRegions:
    """Per-request input/output regions registered with Triton, reused across requests.

    `generation` moves on whenever Triton was unreachable: a restarted Triton has forgotten every
    registration, so slots registered in an older generation register again before use.
    """

    def __init__(self) -> None:
        self.prefix = f"lpbyoc-{os.getpid()}-{id(self):x}"
        self.enabled = True
        self.generation = 0
        self.failures = 0
        self.output_factor = OUTPUT_REGION_FACTOR
        self._counter = itertools.count()
        self._free: list[_Slot] = []
        self._all: list[_Slot] = []
        self.stale_names: list[str] = []

    def take(self, input_bytes: int) -> _Slot:
        """A free slot with room for `input_bytes` (a free slot that is too small is replaced)."""
        slot = self._free.pop() if self._free else None
        output_bytes = max(input_bytes * self.output_factor, MIN_REGION_BYTES)
        if slot is not None and slot.input.size >= input_bytes and slot.output.size >= output_bytes:
            return slot
        if slot is not None:
            self.retire(slot)
        index = next(self._counter)
        fresh = _Slot(
            input=_Region(f"{self.prefix}-{index}-in", max(input_bytes, MIN_REGION_BYTES)),
            output=_Region(f"{self.prefix}-{index}-out", output_bytes),
        )
        self._all.append(fresh)
        return fresh

    def give_back(self, slot: _Slot) -> None:
        self._free.append(slot)

    def retire(self, slot: _Slot) -> None:
        """Never reuse `slot`: unlink it here now, unregister it from Triton at the next registration.

        Also for requests that ended without Triton's answer (timeout, cancel): Triton may still write
        their output, so the region must not serve another request. Triton's own mapping stays valid.
        """
        if slot in self._all:
            self._all.remove(slot)
        for region in (slot.input, slot.output):
            region.destroy()
            self.stale_names.append(region.name)

    def slots(self) -> list[_Slot]:
        return list(self._all)


class TritonInference:
    """One model on one Triton server. Create inside the event loop that uses it (gRPC channels bind to it)."""

    def __init__(
        self,
        url: str = "127.0.0.1:8011",
        model_name: str = "model",
        *,
        protocol: Protocol = "grpc",
        timeout_s: float = 30.0,
        shared_memory: bool = True,
    ) -> None:
        self.url = url.removeprefix("http://") if protocol == "http" else url
        self.model_name = model_name
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._client: Any = None
        self._signature: ModelSignature | None = None
        # Shared memory only with gRPC, and only for one-input one-output models (see _infer_shm).
        self._shm = _SharedMemoryRegions() if shared_memory and protocol == "grpc" else None

    @property
    def transport(self) -> str:
        """What the next request uses: "grpc+shm", "grpc" or "http" (shared memory may switch off)."""
        if self._shm is not None and self._shm.enabled:
            return "grpc+shm"
        return self.protocol

    @property
    def shared_memory_regions(self) -> list[str]:
        """Names of the regions this client created (registered with Triton unless it restarted)."""
        if self._shm is None:
            return []
        return [region.name for slot in self._shm.slots() for region in (slot.input, slot.output)]

    def _get_client(self) -> Any:
        if self._client is None:
            if self.protocol == "grpc":
                import tritonclient.grpc.aio as grpc_aio

                self._client = grpc_aio.InferenceServerClient(self.url, channel_args=GRPC_CHANNEL_ARGS)
            else:
                import tritonclient.http.aio as http_aio

                self._client = http_aio.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
        return self._client

    def _module(self) -> Any:
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as grpc_aio

            return grpc_aio
        import tritonclient.http.aio as http_aio

        return http_aio

    async def _call(self, coroutine: Any) -> Any:
        try:
            return await asyncio.wait_for(coroutine, self.timeout_s)
        except InferenceServerException as exc:
            error = _map_error(exc)
            if isinstance(error, TritonUnavailable):
                self._lost_triton()
            raise error from None
        except (TimeoutError, OSError) as exc:
            self._lost_triton()
            raise TritonUnavailable(
                f"Triton at {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from None
        except Exception as exc:
            # aiohttp's connection errors (http.aio) are not OSError subclasses in every case.
            if type(exc).__module__.startswith("aiohttp"):
                self._lost_triton()
                raise TritonUnavailable(
                    f"Triton at {self.url} unreachable: {type(exc).__name__}: {exc}"
                ) from None
            raise

    def _lost_triton(self) -> None:
        # Whatever Triton comes back may have another config and has forgotten our registrations.
        self._signature = None
        if self._shm is not None:
            self._shm.generation += 1

    async def model_config(self) -> dict[str, Any]:
        """Triton's config of the model as JSON (`parameters` included), over either protocol."""
        client = self._get_client()
        if self.protocol == "grpc":
            response = await self._call(client.get_model_config(self.model_name, as_json=True))
            return dict(response["config"])
        return dict(await self._call(client.get_model_config(self.model_name)))

    async def signature(self) -> ModelSignature:
        """Input/output names, dtypes and dims from Triton's model config (cached until Triton goes away)."""
        if self._signature is None:
            self._signature = ModelSignature.from_config(await self.model_config())
        return self._signature

    async def is_model_ready(self) -> bool:
        """True only when Triton answers and reports the model loaded and ready; never raises for Triton errors."""
        try:
            return bool(await self._call(self._get_client().is_model_ready(self.model_name)))
        except TritonError:
            return False

    async def infer_tensors(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one request with named inputs; returns every configured output by name (read-only arrays)."""
        signature = await self.signature()
        expected = {info.name for info in signature.inputs}
        if set(inputs) != expected:
            raise InvalidInput(
                f"model {self.model_name} takes inputs {sorted(expected)}, got {sorted(inputs)}"
            )
        arrays = {info.name: signature.check_input(info, inputs[info.name]) for info in signature.inputs}
        if self._shm is not None and self._shm.enabled and len(arrays) == 1 and len(signature.outputs) == 1:
            via_shm = await self._infer_shm(signature, self._shm, arrays)
            if via_shm is not None:
                return via_shm
        module = self._module()
        wire_inputs = []
        for info in signature.inputs:
            array = arrays[info.name]
            wire = module.InferInput(info.name, list(array.shape), np_to_triton_dtype(array.dtype))
            wire.set_data_from_numpy(array)
            wire_inputs.append(wire)
        wire_outputs = [module.InferRequestedOutput(info.name) for info in signature.outputs]
        result = await self._call(
            self._get_client().infer(self.model_name, wire_inputs, outputs=wire_outputs)
        )
        outputs: dict[str, np.ndarray] = {}
        for info in signature.outputs:
            value = result.as_numpy(info.name)
            if value is None:
                raise InferenceFailed(f"Triton returned no {info.name} output")
            outputs[info.name] = value
        return outputs

    async def _infer_shm(
        self, signature: ModelSignature, regions: _SharedMemoryRegions, arrays: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray] | None:
        """One request through shared memory; None when it could not be done that way (use plain gRPC)."""
        import tritonclient.grpc.aio as grpc_aio

        (name, array), output_name = next(iter(arrays.items())), signature.outputs[0].name
        try:
            slot = regions.take(array.nbytes)
        except OSError as exc:  # /dev/shm full or missing
            regions.enabled = False
            log.warning("cannot create shared memory regions, using plain gRPC: %s", exc)
            return None
        answered = True  # False while Triton may still write into the slot's output region
        try:
            if regions.stale_names:
                await self._unregister_stale(regions)
            if slot.registered_generation != regions.generation and not await self._register(slot, regions):
                return None
            slot.input.write(array)
            wire = grpc_aio.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            wire.set_shared_memory(slot.input.name, array.nbytes)
            requested = grpc_aio.InferRequestedOutput(output_name)
            requested.set_shared_memory(slot.output.name, slot.output.size)
            answered = False
            try:
                result = await self._call(
                    self._get_client().infer(self.model_name, [wire], outputs=[requested])
                )
            except (InvalidInput, InferenceFailed) as exc:
                answered = True
                if "shared memory" not in str(exc).lower():
                    raise
                self._shm_failed(regions, slot, str(exc), array.nbytes)
                return None
            answered = True
            meta = result.get_output(output_name)
            if meta is None:
                raise InferenceFailed(f"Triton returned no {output_name} output")
            shape = tuple(int(d) for d in meta.shape)
            regions.failures = 0
            return {output_name: slot.output.read(shape, np.dtype(triton_to_np_dtype(meta.datatype)))}
        finally:
            if answered:
                regions.give_back(slot)
            else:
                regions.retire(slot)

    async def _unregister_stale(self, regions: _SharedMemoryRegions) -> None:
        # Triton refuses while a late request still uses the region: those names are tried again later.
        for name in list(regions.stale_names):
            try:
                await self._call(self._get_client().unregister_system_shared_memory(name))
            except (InvalidInput, InferenceFailed):
                continue
            # Two requests may retire the same name concurrently: the second finds it gone.
            if name in regions.stale_names:
                regions.stale_names.remove(name)

    async def _register(self, slot: _Slot, regions: _SharedMemoryRegions) -> bool:
        client = self._get_client()
        await self._unregister_stale(regions)
        for region in (slot.input, slot.output):
            # A name from an earlier generation may still be registered (Triton did not restart).
            try:
                await self._call(client.unregister_system_shared_memory(region.name))
                await self._call(client.register_system_shared_memory(region.name, region.key, region.size))
            except (InvalidInput, InferenceFailed) as exc:
                # Triton cannot open our /dev/shm (not shared with its container): plain gRPC from now on.
                regions.enabled = False
                log.warning("Triton shared memory unavailable, using plain gRPC: %s", exc)
                return False
        slot.registered_generation = regions.generation
        return True

    def _shm_failed(self, regions: _SharedMemoryRegions, slot: _Slot, message: str, input_bytes: int) -> None:
        slot.registered_generation = -1  # e.g. a restarted Triton that no longer knows the region
        too_small = re.search(r"should be at least (\d+) bytes", message)
        if too_small:
            # The output outgrew its region: size the next regions for it (this request goes plain).
            needed_factor = -(-int(too_small.group(1)) // max(input_bytes, 1))
            regions.output_factor = min(max(regions.output_factor, needed_factor + 1), 1024)
            return
        regions.failures += 1
        if regions.failures >= SHM_FAILURES_BEFORE_GIVING_UP:
            regions.enabled = False
            log.warning("Triton shared memory keeps failing, using plain gRPC: %s", message)

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Single-input, single-output models: the batch in, the first output out."""
        signature = await self.signature()
        if len(signature.inputs) != 1:
            names = [info.name for info in signature.inputs]
            raise InvalidInput(
                f"model {self.model_name} takes {len(names)} inputs {names}: use infer_tensors"
            )
        outputs = await self.infer_tensors({signature.inputs[0].name: batch})
        output = outputs[signature.outputs[0].name]
        if output.size == 0 and batch.size != 0:
            # What a python backend running under numpy 2 does: empty outputs, no error.
            raise InferenceFailed(
                f"Triton returned an empty {signature.outputs[0].name} for a non-empty input"
            )
        return output

    async def close(self) -> None:
        if self._shm is not None:
            for slot in self._shm.slots():
                self._shm.retire(slot)
            if self._client is not None:
                for name in self._shm.stale_names:
                    with contextlib.suppress(TritonError):
                        await self._call(self._client.unregister_system_shared_memory(name))
            self._shm.stale_names.clear()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> TritonInference:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
