"""`lpbyoc-worker`: one console script, one subcommand per job the worker image does.

Each subcommand lives in its own module exposing `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their subcommand runs so that
`prefetch` does not pay for torch or tritonclient imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "prefetch": ("lpbyoc_worker.prefetch.command", "download pinned weights into the cache volume"),
    "model-repo": ("lpbyoc_worker.modelrepo.command", "generate the Triton model repository"),
    "serve": ("lpbyoc_worker.adapter.command", "run the Livepeer-facing adapter in front of Triton"),
    "triton": ("lpbyoc_worker.tritonproc.command", "run tritonserver on a generated model repository"),
    "demo": ("lpbyoc_worker.demo", "local demo: Triton + adapter + a BYOC job and live frames"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lpbyoc-worker", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        if name == wanted:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
