"""JetRacer road-following folders: one JPEG per sample, the label in its name (the notebooks' ``XYDataset``).

NVIDIA-AI-IOT/jetracer's road following (``notebooks/interactive_regression.ipynb`` with ``xy_dataset.py``, task
``road_following``, category ``apex``) saves a clicked frame as ``<dataset>/<category>/<x>_<y>_<uuid1>.jpg``, x and y
being the clicked pixel (integers, ``'%d_%d_%s.jpg'``) of the camera image (224 x 224 on the car), and its
``XYDataset`` turns them into the label ``2 * (x / width - 0.5)``, ``2 * (y / height - 0.5)`` with the image's own
width and height: x = 2u/W - 1, y = 2v/H - 1, the convention of this project's labels (``sim/camera.py``'s
``image_to_label``, the web page's ``label_from_pixel``). Import applies exactly that formula, so a sample means
the same target here as in the notebook. Export rounds to the nearest pixel, so a label moves by at most half a
pixel: |dx| <= 1/W, |dy| <= 1/H (0.0045 at 224).

JetBot's road following names files ``xy_<x>_<y>_<uuid>.jpg`` with two different scalings over its history
(0..100, later pixels) that a name cannot tell apart: those files are reported as not in this format.
"""
from __future__ import annotations

import math
import os
import re
import uuid
from pathlib import Path

from ..dataset import Sample
from ..errors import JetracerError
from ..fileio import atomic_write_bytes
from .common import ForeignSample, InteropOptions, Skipped, sample_jpeg

NAME = re.compile(r"^(-?\d+)_(-?\d+)_([^_/][^/]*)\.(jpe?g|png)$", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# export names: uuid5 of the sample's image path, so a re-run writes the same names and never a second copy
_EXPORT_NAMESPACE = uuid.UUID("6f1c2a3e-6d4b-4a8e-9a51-6a0b3c7e2d10")


def label_from_pixel(u: int, v: int, width: int, height: int) -> tuple[float, float]:
    """The notebooks' ``XYDataset`` label of pixel (u, v): 2 * (u / width - 0.5), 2 * (v / height - 0.5)."""
    return 2.0 * (u / width - 0.5), 2.0 * (v / height - 0.5)


def pixel_from_label(x: float, y: float, width: int, height: int) -> tuple[int, int]:
    """The nearest whole pixel (u, v) whose ``label_from_pixel`` is (x, y), within [0, width] x [0, height]."""
    u = math.floor((x + 1.0) / 2.0 * width + 0.5)
    v = math.floor((y + 1.0) / 2.0 * height + 0.5)
    return min(width, max(0, u)), min(height, max(0, v))


def read_source(src: Path, options: InteropOptions) -> tuple[list[ForeignSample], list[Skipped]]:
    """Every file under ``src`` (the dataset folder or one category folder), in name order."""
    found: list[ForeignSample] = []
    skipped: list[Skipped] = []
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            rel = Path(folder, name).relative_to(src).as_posix()
            if not name.lower().endswith(IMAGE_SUFFIXES):
                skipped.append(Skipped(rel, "not an image file"))
                continue
            match = NAME.match(name)
            if not match:
                skipped.append(Skipped(rel, "name is not <x>_<y>_<uuid>.jpg"))
                continue
            u, v = int(match.group(1)), int(match.group(2))
            category = Path(rel).parent.as_posix()
            meta = {"source_px": [u, v], "session": f"{src.name}/{category}" if category != "." else src.name}
            if category != ".":
                meta["category"] = category
            found.append(ForeignSample(rel, Path(folder, name), _pixel_label(u, v), meta))
    return found, skipped


def _pixel_label(u: int, v: int):
    return lambda width, height: label_from_pixel(u, v, width, height)


def export(samples: list[Sample], root: Path, dst: Path, options: InteropOptions, on_progress=None) -> dict:
    """Writes ``dst/<category>/<x>_<y>_<uuid>.jpg`` per sample: the folder a JetRacer notebook's ``XYDataset``
    reads as ``XYDataset(dst, [category])``. JPEG images are copied byte for byte. Each file is written atomically
    and named from its sample, so an interrupted export is finished by running it again."""
    if (dst / "dataset.json").exists():
        raise JetracerError(f"{dst} is a jetracer_trt dataset; export into a new folder")
    category = options.category
    if not category or "/" in category or category in (".", ".."):
        raise JetracerError(f"category {category!r} must be a plain folder name (the notebook's CATEGORIES entry)")
    folder = dst / category
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JetracerError(f"cannot create {folder}: {exc.strerror or exc}") from None
    counts = {"exported": 0, "already_exported": 0, "unreadable": 0, "folder": str(folder)}
    for number, sample in enumerate(samples, start=1):
        image = sample_jpeg(sample)
        if image is None:
            counts["unreadable"] += 1
        else:
            data, width, height = image
            u, v = pixel_from_label(sample.x, sample.y, width, height)
            tag = uuid.uuid5(_EXPORT_NAMESPACE, sample.image_path.relative_to(root).as_posix())
            target = folder / f"{u}_{v}_{tag}.jpg"
            if target.exists():
                counts["already_exported"] += 1
            else:
                try:
                    atomic_write_bytes(target, data)
                except OSError as exc:
                    raise JetracerError(f"cannot write {target}: {exc.strerror or exc}; the files written so far "
                                        "are complete, and running the export again finishes it") from None
                counts["exported"] += 1
        if on_progress:
            on_progress(number, len(samples))
    return counts

