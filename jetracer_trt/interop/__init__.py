"""Datasets in and out: other projects' recordings <-> dataset format v1 (``jetracer-trt data import|export``).

One module per foreign format, each with ``read_source(src, options)`` (what a source holds: the samples it can give
and what it cannot, with reasons) and ``export(samples, root, dst, options, on_progress)``; ``common.py`` holds
what every import shares: the crash-safe resume, the image checks and the report. The label conversions of each
format are spelled out in docs/dataset_format.md ("Other formats").
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..dataset import scan_dataset
from ..errors import JetracerError
from .common import ImportReport, InteropOptions, import_samples

FORMAT_MODULES = {"jetracer": "jetracer_folders", "donkeycar": "donkeycar_tub"}
FORMATS = tuple(FORMAT_MODULES)

__all__ = ["FORMATS", "ImportReport", "InteropOptions", "export_dataset", "import_dataset"]


def _format_module(fmt: str):
    if fmt not in FORMAT_MODULES:
        raise JetracerError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return importlib.import_module(f"{__package__}.{FORMAT_MODULES[fmt]}")


def import_dataset(fmt: str, src: str | os.PathLike, dst: str | os.PathLike, options: InteropOptions | None = None,
                   on_progress=None) -> ImportReport:
    """Appends the samples of the ``fmt`` recording at ``src`` to the dataset ``dst`` (created if needed).

    Safe to run again after a crash or a kill: samples already in ``dst`` (by their ``source_name``) are skipped,
    so nothing is imported twice. ``on_progress(done, total)`` is called once per source sample.
    """
    module = _format_module(fmt)
    src = Path(src).absolute()
    if not src.is_dir():
        raise JetracerError(f"{src} is not a folder" if src.exists() else f"{src} does not exist")
    options = options or InteropOptions()
    found, skipped = module.read_source(src, options)
    if not found:
        report = ImportReport(fmt, str(src), str(Path(dst).absolute()))
        for item in skipped:
            report.skip(item)
        detail = "".join(f"; {count} {reason}" for reason, count in report.skipped.most_common())
        raise JetracerError(f"{src} holds no {fmt} samples{detail or ' (it is empty)'}")
    return import_samples(fmt, src, Path(dst), found, skipped, on_progress)


def export_dataset(fmt: str, src: str | os.PathLike, dst: str | os.PathLike, options: InteropOptions | None = None,
                   on_progress=None) -> dict:
    """Writes the usable samples of the dataset ``src`` (tombstones honoured) as a ``fmt`` recording at ``dst``;
    returns the format's counts ({"exported": N, ...})."""
    module = _format_module(fmt)
    root = Path(src).absolute()
    samples = scan_dataset(root).samples
    return module.export(samples, root, Path(dst).absolute(), options or InteropOptions(), on_progress)
