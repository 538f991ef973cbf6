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

    @property
    def succeeded(self) -> bool:
        return self.reason == SUCCEEDED

    def to_json(self) -> dict[str, Any]:
        message = self.message
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 3] + "..."
        return {
            "result": "Succeeded" if self.succeeded else "Failed",
            "reason": self.reason,
            "message": message,
            "sha": self.sha,
            "bytes": self.bytes,
            "files": self.files,
            "bytesDownloaded": self.bytes_downloaded,
        }


def emit_result(result: Result, termination_log: Path | None) -> None:
    """Write the result line to the termination log (skipped when not writable) and stdout."""
    line = json.dumps(result.to_json(), sort_keys=True)
    if termination_log is not None:
        try:
            with open(termination_log, "w") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # outside Kubernetes /dev/termination-log does not exist; stdout still has the result
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
