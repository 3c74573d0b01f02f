"""``jetracer-trt data``: check, import, export, inspect and compact datasets (docs/dataset_format.md)."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..control import PROFILES
from ..dataset import check_dataset, compact_dataset, scan_dataset
from ..errors import JetracerError
from ..interop import FORMATS, InteropOptions, export_dataset, import_dataset
DIR_HELP = "dataset folder (the one holding dataset.json and index.jsonl)"
COUNTS_JSON = "print only the counts as one JSON object on stdout"


def register(subparsers) -> None:
    """Adds the ``data`` verb and its ``check``, ``import``, ``export``, ``stats`` and ``compact`` subcommands."""
    parser = subparsers.add_parser(
        "data",
        help="check, import, export, inspect and compact datasets",
        description="Work with datasets (images plus an index.jsonl): count good and corrupt samples, import and "
                    "export other projects' recordings, see what a dataset holds, drop removed samples for good.",
    )
    commands = parser.add_subparsers(dest="data_command", metavar="<command>")
    parser.set_defaults(func=lambda args: _print_help(parser))

    check = _subcommand(
        commands, "check", run_check, 'print only {"samples": N, "corrupt": N} as one JSON object on stdout',
        help="count the usable and the corrupt samples of a dataset",
        description=(
            "Read a dataset's index and count its usable samples and its corrupt entries (bad index lines, missing "
            "images), which training skips. Exits 0 whenever the dataset can be read, even with corrupt entries, "
            "and 2 when it cannot be read at all."
        ),
    )
    check.add_argument("dir", metavar="DIR", help=DIR_HELP)
    check.add_argument(
        "--decode", action="store_true", help="also decode every image to find damaged JPEGs (slower)"
    )

    imp = _subcommand(
        commands, "import", run_import, COUNTS_JSON,
        help="append another project's recording to a dataset",
        description=(
            "Append the samples of a JetRacer road-following folder (<x>_<y>_<uuid>.jpg, pixel labels) or a "
            "donkeycar tub v2 (or a folder of tubs) to the dataset DST, created if needed. Each sample keeps its "
            "source name and original labels in its metadata. Safe to run again after a crash or a kill: what is "
            "already in DST is skipped, nothing is imported twice. Files and records that cannot be imported are "
            "counted with the reason."
        ),
    )
    imp.add_argument("--format", required=True, choices=FORMATS, help="the source's format")
    imp.add_argument("src", metavar="SRC", help="the JetRacer dataset (or category) folder, or the donkeycar tub")
    imp.add_argument("dst", metavar="DST", help="the dataset to append to (created if missing)")
    _add_control_profile(imp, "donkeycar: the control law that turns user/angle into the target x")
    imp.add_argument("--label-y", type=float, default=None, metavar="Y",
                     help="donkeycar: y of every label made from steering (default -0.12, the recorder's)")
    imp.add_argument("--include-pilot-modes", action="store_true",
                     help="donkeycar: also import records a pilot steered (user/mode local or local_angle), whose "
                          "user/angle did not drive")

    exp = _subcommand(
        commands, "export", run_export, COUNTS_JSON,
        help="write a dataset in another project's format",
        description=(
            "Write the usable samples of the dataset SRC as a JetRacer road-following folder (DST/<category>/"
            "<x>_<y>_<uuid>.jpg, the nearest pixel; XYDataset(DST, [category]) reads it) or as a new donkeycar tub "
            "(user/angle from the label through the control law). Images are copied byte for byte."
        ),
    )
    exp.add_argument("--format", required=True, choices=FORMATS, help="the format to write")
    exp.add_argument("src", metavar="SRC", help=DIR_HELP)
    exp.add_argument("dst", metavar="DST", help="the folder to write (jetracer: may exist; donkeycar: new or empty)")
    exp.add_argument("--category", default="apex", help="jetracer: the category folder (default: apex, as the "
                                                        "JetRacer road-following notebook's CATEGORIES)")
    _add_control_profile(exp, "donkeycar: the control law that turns the target x into user/angle")

    stats = _subcommand(
        commands, "stats", run_stats, "print only the statistics as one JSON object on stdout",
        help="counts, label histograms and a contact sheet of a dataset",
        description=(
            "Count a dataset's samples per source and per session, its corrupt entries and removed samples, and its "
            "label ranges and histograms. With --out, also write OUT/labels.png (x and y histograms by source, "
            "targets in the image), OUT/contact_sheet.png (thumbnails spread over every session with their targets "
            "drawn) and OUT/stats.json."
        ),
    )
    stats.add_argument("dir", metavar="DIR", help=DIR_HELP)
    stats.add_argument("--out", metavar="OUT", help="folder for the pictures and stats.json (created if needed)")
    stats.add_argument("--bins", type=int, default=20, help="histogram bins over [-1, 1] (default 20)")

    compact = _subcommand(
        commands, "compact", run_compact, COUNTS_JSON,
        help="rewrite a dataset without its removed samples and corrupt entries",
        description=(
            "Rewrite the index without removed samples (tombstones), the tombstones themselves and corrupt entries, "
            "and delete their images. In place, the new index replaces the old one atomically, and writers running "
            "meanwhile keep appending safely; with --out, a compacted copy is written to a new folder and DIR is "
            "left as it was."
        ),
    )
    compact.add_argument("dir", metavar="DIR", help=DIR_HELP)
    compact.add_argument("--out", metavar="OUT", help="write the compacted dataset here (a new or empty folder)")


def _subcommand(commands, name: str, func, json_help: str, **parser_args) -> argparse.ArgumentParser:
    """A ``data`` subcommand that runs ``func`` and has ``--json``."""
    parser = commands.add_parser(name, **parser_args)
    parser.add_argument("--json", action="store_true", help=json_help)
    parser.set_defaults(func=func)
    return parser


def _add_control_profile(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument("--control-profile", choices=PROFILES, default="car",
                        help=f"{purpose} (config/control.yaml; default: car)")


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


class _Progress:
    """A tqdm bar on stderr for ``on_progress(done, total)`` callbacks; silent when stderr is not a terminal."""

    def __init__(self, unit: str, quiet: bool):
        self.unit, self.quiet, self.bar = unit, quiet, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=f" {self.unit}", file=sys.stderr, disable=self.quiet or None,
                            dynamic_ncols=True, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_check(args: argparse.Namespace) -> int:
    """Prints the counts; warnings about individual entries go to the log (stderr), so --json output stays clean."""
    result = check_dataset(args.dir, decode=args.decode)
    if args.json:
        print(json.dumps(result))
    else:
        note = " (skipped when training; see the warnings above)" if result["corrupt"] else ""
        print(f"{args.dir}: {result['samples']} usable samples, {result['corrupt']} corrupt entries{note}")
    return 0


def _options(args: argparse.Namespace) -> InteropOptions:
    label_y = getattr(args, "label_y", None)
    if label_y is not None and not (math.isfinite(label_y) and -1.0 <= label_y <= 1.0):
        raise JetracerError(f"--label-y must be in [-1, 1], got {label_y}")
    defaults = InteropOptions()
    return InteropOptions(control_profile=args.control_profile,
                          label_y=defaults.label_y if label_y is None else label_y,
                          include_pilot_modes=getattr(args, "include_pilot_modes", False),
                          category=getattr(args, "category", defaults.category))


def run_import(args: argparse.Namespace) -> int:
    progress = _Progress("samples", quiet=args.json)
    try:
        report = import_dataset(args.format, args.src, args.dst, _options(args), on_progress=progress)
    finally:
        progress.close()
    print(json.dumps(report.as_dict()) if args.json else report.summary())
    return 0


def run_export(args: argparse.Namespace) -> int:
    progress = _Progress("samples", quiet=args.json)
    try:
        counts = export_dataset(args.format, args.src, args.dst, _options(args), on_progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(counts))
    else:
        where = counts.get("folder") or counts.get("tub")
        extra = "".join(f", {counts[key]} {key.replace('_', ' ')}" for key in ("already_exported", "unreadable")
                        if counts.get(key))
        print(f"exported {counts['exported']} samples of {args.src} as {args.format} into {where}{extra}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from ..data_stats import dataset_stats, write_stats_pictures
    from ..fileio import atomic_write_bytes

    root = Path(args.dir).absolute()
    scan = scan_dataset(root)
    stats = dataset_stats(root, scan, bins=args.bins)
    if args.out:
        out = Path(args.out)
        stats["pictures"] = write_stats_pictures(root, scan, out, bins=args.bins)
        atomic_write_bytes(out / "stats.json", (json.dumps(stats, indent=1) + "\n").encode())
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"{root}: {stats['samples']} samples ({stats['corrupt']} corrupt entries, {stats['removed']} removed)")
    print("  sources: " + (", ".join(f"{name} {n}" for name, n in stats["sources"].items()) or "none"))
    sessions = sorted(stats["sessions"].items(), key=lambda item: -item[1]["samples"])
    shown = ", ".join(f"{name} {counts['samples']}" + (f" (-{counts['removed']})" if counts["removed"] else "")
                      for name, counts in sessions[:8])
    more = f", and {len(sessions) - 8} more" if len(sessions) > 8 else ""
    print(f"  sessions ({len(sessions)}): {shown or 'none'}{more}")
    for name in ("x", "y"):
        label = stats[name]
        if label["min"] is not None:
            print(f"  {name}: {label['min']:+.3f} .. {label['max']:+.3f}, mean {label['mean']:+.3f}, "
                  f"std {label['std']:.3f}")
    if args.out:
        print("  pictures: " + ", ".join(stats["pictures"].values()))
    return 0


def run_compact(args: argparse.Namespace) -> int:
    progress = _Progress("images", quiet=args.json)
    try:
        counts = compact_dataset(args.dir, args.out, on_progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(counts))
    else:
        where = f"into {args.out}" if args.out else "in place"
        print(f"compacted {args.dir} {where}: {counts['samples']} samples kept; dropped {counts['removed']} removed "
              f"samples, {counts['tombstones']} tombstones and {counts['corrupt']} corrupt entries; "
              f"{counts['images_deleted']} images deleted")
    return 0
