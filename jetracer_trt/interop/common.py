"""What every import shares: the samples a foreign source offers, the resume that never duplicates, the report."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2

from ..control import STEERING_LABEL_Y, ControlParams
from ..dataset import JPEG_MAGIC, DatasetWriteError, DatasetWriter, Sample, decode_image, scan_dataset
from ..errors import JetracerError

# y of a label made from a steering command: the control law ignores y, so labels from steering (the recorder's, a
# donkeycar tub's) all sit at one height, the one the simulator's targets sit at (the recorder's default too)
EXAMPLES_PER_REASON = 3  # names shown per skip reason; the counts are complete


@dataclass(frozen=True)
class InteropOptions:
    """Settings of the formats that need them; each format reads only its own."""

    control_profile: str = "car"  # donkeycar: the control law that turns user/angle into a target and back
    label_y: float = STEERING_LABEL_Y  # donkeycar import: the y of every label
    include_pilot_modes: bool = False  # donkeycar import: also records a pilot steered (user/angle did not drive)
    category: str = "apex"  # jetracer export: the XYDataset category folder

    def control_params(self) -> ControlParams:
        return ControlParams.from_config(profile=self.control_profile)


@dataclass(frozen=True)
class ForeignSample:
    """One sample a foreign recording offers, before its image is read."""

    source_name: str  # names it uniquely within its format: how a re-run recognises what is already imported
    image_path: Path
    label: Callable[[int, int], tuple[float, float]]  # (image width, height) -> the road target (x, y)
    meta: dict  # the original labels and whatever else the source says about the sample


@dataclass(frozen=True)
class Skipped:
    """Something in a source that does not become a sample, and why."""

    name: str
    reason: str


@dataclass
class ImportReport:
    format: str
    source: str
    destination: str
    imported: int = 0
    already_imported: int = 0  # found in the destination from an earlier (perhaps interrupted) run
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict = field(default_factory=dict)  # reason -> the first few names

    def skip(self, item: Skipped) -> None:
        self.skipped[item.reason] += 1
        names = self.examples.setdefault(item.reason, [])
        if len(names) < EXAMPLES_PER_REASON:
            names.append(item.name)

    def as_dict(self) -> dict:
        return {"format": self.format, "source": self.source, "destination": self.destination,
                "imported": self.imported, "already_imported": self.already_imported,
                "skipped": sum(self.skipped.values()),
                "skipped_reasons": {reason: {"count": count, "examples": self.examples[reason]}
                                    for reason, count in self.skipped.most_common()}}

    def summary(self) -> str:
        lines = [f"imported {self.imported} samples from {self.source} ({self.format}) into {self.destination}"
                 + (f"; {self.already_imported} were already there" if self.already_imported else "")]
        for reason, count in self.skipped.most_common():
            lines.append(f"  skipped {count}: {reason} (e.g. {', '.join(self.examples[reason])})")
        return "\n".join(lines)


def _imported_names(dst: Path, fmt: str) -> set[str]:
    """source_name of every sample of format ``fmt`` in ``dst``, removed ones included: a sample someone deleted
    after importing it does not come back when the import is run again (until ``data compact`` forgets it)."""
    scan = scan_dataset(dst)
    return {sample.meta.get("source_name") for sample in (*scan.samples, *scan.removed)
            if sample.meta.get("source_format") == fmt}


def import_samples(fmt: str, src: Path, dst: Path, found: list[ForeignSample], skipped: list[Skipped],
                   on_progress=None) -> ImportReport:
    """Appends the ``found`` samples that ``dst`` does not hold yet; each image is checked (it must decode) and
    stored as it is when it is a JPEG. A disk error stops the import (everything appended so far is kept)."""
    report = ImportReport(fmt, str(src), str(Path(dst).absolute()))
    for item in skipped:
        report.skip(item)
    with DatasetWriter(dst) as writer:  # creates or checks the dataset before anything is read
        done = _imported_names(writer.root, fmt)
        for number, item in enumerate(found, start=1):
            if item.source_name in done:
                report.already_imported += 1
            else:
                problem = _append(writer, fmt, item)
                if problem:
                    report.skip(Skipped(item.source_name, problem))
                else:
                    report.imported += 1
                    done.add(item.source_name)
            if on_progress:
                on_progress(number, len(found))
    return report


def _append(writer: DatasetWriter, fmt: str, item: ForeignSample) -> str:
    """Appends one sample; returns why it cannot be imported, or "" once it is in the dataset."""
    try:
        data = item.image_path.read_bytes()
    except FileNotFoundError:
        return "image file missing"
    except OSError as exc:
        return f"image file unreadable ({exc.strerror or exc})"
    try:
        frame = decode_image(data)
    except JetracerError:
        return "image cannot be decoded (empty, truncated or not an image)"
    x, y = item.label(frame.shape[1], frame.shape[0])
    if not (math.isfinite(x) and math.isfinite(y) and -1.0 <= x <= 1.0 and -1.0 <= y <= 1.0):
        return "label outside the image"
    meta = {"source_format": fmt, "source_name": item.source_name, **item.meta}
    try:
        if data[:3] == JPEG_MAGIC:
            writer.append_jpeg(data, x, y, **meta)  # the original bytes: no second lossy encoding
        else:
            writer.append(frame, x, y, **meta)
    except DatasetWriteError:
        raise
    except JetracerError as exc:
        return f"not storable: {exc}"
    return ""


def sample_jpeg(sample: Sample) -> tuple[bytes, int, int] | None:
    """(JPEG bytes, width, height) of a dataset sample's image for an export: the file's own bytes (a dataset
    stores JPEGs), or None when it cannot be read or decoded."""
    try:
        data = sample.image_path.read_bytes()
        frame = decode_image(data)
    except (OSError, JetracerError):
        return None
    if data[:3] != JPEG_MAGIC:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            return None
        data = jpeg.tobytes()
    return data, frame.shape[1], frame.shape[0]
