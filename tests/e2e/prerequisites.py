"""Whether this machine can run the kind e2e suite, and if not, why not (the skip reason)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Runner = Callable[[Sequence[str]], "CommandResult"]


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


def run_command(argv: Sequence[str], timeout: float = 20.0) -> CommandResult:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return CommandResult(returncode=127, stderr=str(err))
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def missing_prerequisites(
    cluster: str,
    context: str,
    run: Runner = run_command,
    which: Callable[[str], str | None] = shutil.which,
) -> str | None:
    """The first missing prerequisite as a skip reason, or None when the suite can run.

    The Docker client alone proves nothing: `docker info` must reach a daemon.
    """
    if which("docker") is None:
        return "docker is not on PATH"
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"])
    if info.returncode != 0:
        return f"the Docker daemon does not answer `docker info`: {_last_line(info.stderr or info.stdout)}"
    for tool in ("kind", "kubectl", "helm"):
        if which(tool) is None:
            return f"{tool} is not on PATH"
    clusters = run(["kind", "get", "clusters"])
    if clusters.returncode != 0:
        return f"`kind get clusters` failed: {_last_line(clusters.stderr)}"
    if cluster not in clusters.stdout.split():
        return f"no kind cluster named {cluster!r} (run `make kind-up` or `make kind-fake-gpu`)"
    version = run(["kubectl", "--context", context, "version", "-o", "json"])
    if version.returncode != 0:
        return f"the API server of context {context!r} does not answer: {_last_line(version.stderr)}"
    return None
