"""Locate, prepare and run `tritonserver`: the `triton` subcommand and the in-process launcher."""

from lpbyoc_worker.tritonproc.install import TritonInstall, TritonNotFound, locate_triton, prepare_runtime
from lpbyoc_worker.tritonproc.launcher import TritonServer, TritonStartError
from lpbyoc_worker.tritonproc.options import TritonOptions, server_argv

__all__ = [
    "TritonInstall",
    "TritonNotFound",
    "TritonOptions",
    "TritonServer",
    "TritonStartError",
    "locate_triton",
    "prepare_runtime",
    "server_argv",
]
