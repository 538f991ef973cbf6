"""livepeer-byoc worker: weights prefetch, Triton model repository, Livepeer-facing adapter."""

__version__ = "0.1.0"
