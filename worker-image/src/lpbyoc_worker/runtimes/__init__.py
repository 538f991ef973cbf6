"""Model runtimes: one module per model family, one registry of tasks (`registry.TASKS`).

A runtime loads a Hugging Face snapshot (diffusers or transformers layout) once and serves one
task. The same class runs inside Triton's python backend (`modelrepo/hf_backend.py`) and
in-process (tests, benchmarks), so both paths give the same output for the same seed.
"""
