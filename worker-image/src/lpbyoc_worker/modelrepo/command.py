"""`lpbyoc-worker model-repo`: the init container that writes the Triton model repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lpbyoc_worker.modelrepo.config import ConfigProblem
from lpbyoc_worker.modelrepo.layout import ModelRepoError, generate
from lpbyoc_worker.modelrepo.serving import InvalidServingSpec, parse_serving

EXIT_BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights-dir", type=Path, required=True, help="complete snapshot directory")
    parser.add_argument("--output", type=Path, required=True, help="model repository to write")
    parser.add_argument("--model-name", default="model", help="name the model is served under")
    parser.add_argument(
        "--serving-json", default="{}", help="spec.serving.triton as camelCase JSON (defaults apply)"
    )
    parser.add_argument(
        "--task",
        default=None,
        help="task a diffusers/transformers snapshot serves (from the pipeline or serving.task)",
    )
    parser.add_argument(
        "--variant",
        default=None,
        help="weights variant the prefetch took (e.g. fp16); the runtime loads the files present",
    )
    parser.add_argument("--kind", choices=["KIND_GPU", "KIND_CPU"], default="KIND_GPU")
    parser.add_argument(
        "--skip-marker-check",
        action="store_true",
        help="serve a directory without the prefetch completion marker (local development only)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        serving = parse_serving(args.serving_json)
        generated = generate(
            args.weights_dir,
            args.output,
            serving,
            model_name=args.model_name,
            kind=args.kind,
            require_marker=not args.skip_marker_check,
            task=args.task,
        )
    except (InvalidServingSpec, ConfigProblem, ModelRepoError) as exc:
        print(f"model-repo: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        f"model-repo: wrote {generated.directory} ({generated.model_format} from {generated.source}"
        + (f", {generated.class_name} for {generated.task})" if generated.task else ")"),
        file=sys.stderr,
    )
    return 0
