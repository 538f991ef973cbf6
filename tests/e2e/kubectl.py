"""The few kubectl calls the e2e suite makes, against one context and namespace."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

CAPABILITIES = "livepeercapabilities.livepeer.org"
_FORWARDING = re.compile(r"Forwarding from (?:127\.0\.0\.1|\[::1\]):(\d+) -> (\d+)")


def forwarded_port(line: str) -> int | None:
    """The local port in kubectl port-forward's 'Forwarding from 127.0.0.1:PORT -> N' line."""
    match = _FORWARDING.search(line)
    return int(match.group(1)) if match else None


class KubectlError(RuntimeError):
    pass


@dataclass(frozen=True)
class Kubectl:
    context: str
    namespace: str
    binary: str = "kubectl"

    def argv(self, *args: str) -> list[str]:
        return [self.binary, "--context", self.context, "--namespace", self.namespace, *args]

    async def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin)
        code = proc.returncode or 0
        if check and code != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed ({code}): {err.decode().strip()}")
        return code, out.decode(), err.decode()

    async def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        await self.run("apply", "-f", "-", stdin=yaml.safe_dump_all(objects).encode())

    async def get(self, resource: str, name: str) -> dict[str, Any] | None:
        code, out, err = await self.run("get", resource, name, "-o", "json", check=False)
        if code != 0:
            if "NotFound" in err:
                return None
            raise KubectlError(f"kubectl get {resource} {name}: {err.strip()}")
        result: dict[str, Any] = json.loads(out)
        return result

    async def delete(self, resource: str, name: str) -> None:
        await self.run("delete", resource, name, "--ignore-not-found", "--wait=false")

    async def secret_value(self, name: str, key: str) -> str:
        secret = await self.get("secret", name)
        if secret is None or key not in (secret.get("data") or {}):
            raise KubectlError(f"secret {name} has no key {key}")
        return base64.b64decode(secret["data"][key]).decode()

    @contextlib.asynccontextmanager
    async def port_forward(
        self, target: str, remote_port: int, ready_within: float = 30.0
    ) -> AsyncIterator[int]:
        """Forward a free local port to `target` (e.g. svc/name); yields the local port."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv("port-forward", target, f":{remote_port}"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            port = None
            async with asyncio.timeout(ready_within):
                while port is None:
                    line = await proc.stdout.readline()
                    if not line:
                        err = await proc.stderr.read() if proc.stderr else b""
                        raise KubectlError(f"port-forward to {target} ended: {err.decode().strip()}")
                    port = forwarded_port(line.decode())
            yield port
        finally:
            if proc.returncode is None:
                proc.terminate()
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
