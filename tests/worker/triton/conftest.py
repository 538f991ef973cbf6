"""Fixtures for the Triton side of the worker: one real tritonserver for the session."""

from __future__ import annotations

import sys
from pathlib import Path

# `tests.support` is imported as a package from the repository root (tests/worker has no __init__.py).
_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.triton import triton_server  # noqa: E402

__all__ = ["triton_server"]
