"""`lpbyoc render -f CAPABILITY.yaml [...]`: print the objects the operator would apply."""

from __future__ import annotations

import argparse
import sys

import yaml

from lpbyoc.render import render_files
from lpbyoc.settings import OperatorSettings
from lpbyoc.validation import SpecError

EXIT_INVALID = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE",
        help="LivepeerCapability YAML (multi-document allowed); repeatable",
    )
    parser.add_argument(
        "--settings",
        metavar="FILE",
        help="YAML mapping of operator settings (e.g. hf_endpoint, worker_image)",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace for capabilities that name none (default: default)",
    )


def load_settings(path: str | None) -> OperatorSettings:
    if path is None:
        return OperatorSettings()
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a YAML mapping of settings")
    return OperatorSettings.from_mapping(values)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.settings)
        output = render_files(args.filename, settings, args.namespace)
    except SpecError as exc:
        for message in exc.errors:
            print(f"error: {message}", file=sys.stderr)
        return EXIT_INVALID
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    sys.stdout.write(output)
    return 0
