"""Fixtures shared across test areas.

The Triton server fixture is session-scoped and registered here once, so a full run starts
one tritonserver for the worker, adapter and demo tests together.
"""

pytest_plugins = ["tests.support.triton"]
