"""Fixtures for the Triton side of the worker: `triton_server` comes from tests/conftest.py."""
