"""``jetracer-trt data``: inspect recorded datasets (format v1, see docs/dataset_format.md)."""
from __future__ import annotations

import argparse
import json

from ..dataset import check_dataset


def register(subparsers) -> None:
    """Adds the ``data`` verb and its ``check`` subcommand."""
    parser = subparsers.add_parser(
        "data",
        help="inspect a recorded dataset",
        description="Inspect a dataset recorded by `jetracer-trt sim collect` (images plus an index.jsonl).",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="<command>")
    parser.set_defaults(func=lambda args: _print_help(parser))

    check = commands.add_parser(
        "check",
        help="count the usable and the corrupt samples of a dataset",
        description=(
            "Read a dataset's index and count its usable samples and its corrupt entries (bad index lines, missing "
            "images), which training skips. Exits 0 whenever the dataset can be read, even with corrupt entries, "
            "and 2 when it cannot be read at all."
        ),
    )
    check.add_argument("dir", metavar="DIR", help="dataset folder (the one holding dataset.json and index.jsonl)")
    check.add_argument(
        "--json", action="store_true", help='print only {"samples": N, "corrupt": N} as one JSON object on stdout'
    )
    check.add_argument(
        "--decode", action="store_true", help="also decode every image to find damaged JPEGs (slower)"
    )
    check.set_defaults(func=run_check)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def run_check(args: argparse.Namespace) -> int:
    """Prints the counts; warnings about individual entries go to the log (stderr), so --json output stays clean."""
    result = check_dataset(args.dir, decode=args.decode)
    if args.json:
        print(json.dumps(result))
    else:
        note = " (skipped when training; see the warnings above)" if result["corrupt"] else ""
        print(f"{args.dir}: {result['samples']} usable samples, {result['corrupt']} corrupt entries{note}")
    return 0
