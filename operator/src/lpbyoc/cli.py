"""`lpbyoc`: the operator's console script, one subcommand per module in `lpbyoc.commands`.

Each module exposes `add_arguments(parser)` and `run(args) -> int` and is imported only
when its subcommand runs, so `lpbyoc crd` does not start kopf.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("lpbyoc.commands.run", "run the operator (kopf) against the current cluster"),
    "render": ("lpbyoc.commands.render", "print every object the operator would apply, no cluster needed"),
    "crd": ("lpbyoc.commands.crd", "print the LivepeerCapability CRD"),
    "demo": (
        "lpbyoc.commands.demo",
        "run the operator against a local API double and show a capability converge",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lpbyoc", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    modules: dict[str, ModuleType] = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        if name == wanted:
            modules[name] = importlib.import_module(module_name)
            modules[name].add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
