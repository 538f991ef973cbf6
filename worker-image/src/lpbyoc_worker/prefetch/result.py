"""The prefetch outcome: failure reasons and the result JSON the operator reads.

The result goes to the termination log (the operator reads it from the pod's
`state.terminated.message`) and to stdout as the last line; see docs/architecture.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUCCEEDED = "Succeeded"
UNAUTHORIZED = "Unauthorized"
REPO_NOT_FOUND = "RepoNotFound"
REVISION_NOT_FOUND = "RevisionNotFound"
ENTRY_NOT_FOUND = "EntryNotFound"
DOWNLOAD_STALLED = "DownloadStalled"
DISK_FULL = "DiskFull"
CHECKSUM_MISMATCH = "ChecksumMismatch"
NETWORK_ERROR = "NetworkError"
INTERNAL_ERROR = "InternalError"

# Kubernetes keeps at most 4096 bytes of a termination message; leave room for the other fields.
MAX_MESSAGE_CHARS = 1500
TERMINATION_LIMIT = 4096
# Bounds on the "model" block, so the whole line stays under the limit (the marker keeps it whole).
MAX_MODEL_LIST = 8
MAX_MODEL_TEXT = 200
MAX_PROBLEMS = 3
MAX_PROBLEM_CHARS = 300


class PrefetchError(Exception):
    """A failure with one of the contract's reasons and a message fit for a CR condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Result:
    reason: str
    message: str
    sha: str | None
    bytes: int
    files: int
    bytes_downloaded: int = 0
    model: dict[str, Any] | None = None  # what the snapshot is (see fit_model); None before it is complete

    @property
    def succeeded(self) -> bool:
        return self.reason == SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        data = {
            "result": "Succeeded" if self.succeeded else "Failed",
            "reason": self.reason,
            "message": _cut(self.message, MAX_MESSAGE_CHARS),
            "sha": self.sha,
            "bytes": self.bytes,
            "files": self.files,
            "bytesDownloaded": self.bytes_downloaded,
        }
        if self.model is not None:
            data["model"] = fit_model(self.model)
        # Whatever the content, the line must fit the termination message: shorten the free text.
        while len(_line(data).encode()) >= TERMINATION_LIMIT:
            model = data.get("model")
            if isinstance(model, dict) and model.get("problems"):
                model["problems"] = [_cut(p, 80) for p in model["problems"][:1]]
                if len(_line(data).encode()) < TERMINATION_LIMIT:
                    break
                model["problems"] = ["(problems cut; see the manifest)"]
                if len(_line(data).encode()) < TERMINATION_LIMIT:
                    break
            data["message"] = _cut(str(data["message"]), max(40, len(str(data["message"])) // 2))
            if len(str(data["message"])) <= 40:
                data.pop("model", None)
                break
        return data


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)


def fit_model(model: dict[str, Any]) -> dict[str, Any]:
    """The model block as the result line carries it: lists and texts bounded (order kept)."""
    fitted: dict[str, Any] = {}
    for key, value in model.items():
        if isinstance(value, str):
            fitted[key] = _cut(value, MAX_MODEL_TEXT)
        elif isinstance(value, list):
            if key == "problems":
                fitted[key] = [_cut(str(p), MAX_PROBLEM_CHARS) for p in value[:MAX_PROBLEMS]]
                if len(value) > MAX_PROBLEMS:
                    fitted[key].append(f"(+{len(value) - MAX_PROBLEMS} more)")
            else:
                fitted[key] = [_cut(str(v), MAX_MODEL_TEXT) for v in value[:MAX_MODEL_LIST]]
        elif value is None or isinstance(value, bool | int | float):
            fitted[key] = value
    return fitted


def emit_result(result: Result, termination_log: Path | None) -> None:
    """Write the result line to the termination log (skipped when not writable) and stdout."""
    line = _line(result.to_json())
    if termination_log is not None:
        try:
            with open(termination_log, "w") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # outside Kubernetes /dev/termination-log does not exist; stdout still has the result
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
