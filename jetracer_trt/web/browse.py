"""The web page's dataset browser: pages of samples, newest first, and their thumbnails with the label drawn; ROS-free.

A sample is named by its image exactly as the index names it (``images/<name>.jpg``, what ``DatasetWriter.remove``
takes). A name from a request is only ever looked up among the live samples of the current index (it never becomes
a path by itself), and a sample's image is served only when it lies inside the dataset folder once links are
followed. Samples come from ``scan_dataset``, so tombstones (the page's delete and undo) are honoured; the scan is
kept until the index file changes, so paging through a dataset that is not being written reads its index once.
"""
from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from ..data_stats import draw_tile, sample_origin
from ..dataset import INDEX_NAME, Sample, scan_dataset
from ..errors import JetracerError

MAX_PER_PAGE = 60
THUMBNAIL_PX = 160
THUMBNAIL_JPEG_QUALITY = 85
MAX_SAMPLE_ID_CHARS = 200
# what an index's image names look like (``images/<8 hex>_<counter>.jpg`` from our writers); anything else is refused
# before it is looked up
SAMPLE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*")


class UnknownSample(JetracerError):
    """The id names no live sample of the dataset (deleted meanwhile, or never one)."""


def check_sample_id(value) -> str:
    """``value`` if it has the shape of an index's image name; raises JetracerError (one line) otherwise."""
    if (not isinstance(value, str) or not value or len(value) > MAX_SAMPLE_ID_CHARS
            or not SAMPLE_ID.fullmatch(value) or ".." in value.split("/")):
        raise JetracerError("a sample id is the image name the dataset list gave, e.g. images/1a2b3c4d_000012.jpg")
    return value


@dataclass(frozen=True)
class _Snapshot:
    key: tuple  # the index file's (inode, size, mtime): a new key, a new scan
    samples: list[Sample]  # newest first
    by_id: dict[str, Sample]
    corrupt: int
    removed: int


class DatasetBrowser:
    """Reads the dataset at ``root`` for the page; thread-safe (the app calls it from its worker threads)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).absolute()
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()

    def _current(self) -> _Snapshot:
        try:
            st = (self.root / INDEX_NAME).stat()
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        with self._lock:
            if self._snapshot is None or key is None or self._snapshot.key != key:
                scan = scan_dataset(self.root)
                newest_first = scan.samples[::-1]
                by_id = {sample_id(self.root, s): s for s in newest_first}
                self._snapshot = _Snapshot(key, newest_first, by_id, scan.corrupt, len(scan.removed))
            return self._snapshot

    def page(self, page: int, per_page: int) -> dict:
        """Page ``page`` (0: the newest samples) of ``per_page`` samples, with the counts; a page past the end
        gives the last one (the list shrank under the page: a delete)."""
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise JetracerError(f"per_page must be 1..{MAX_PER_PAGE}, got {per_page}")
        if page < 0:
            raise JetracerError(f"page must be 0 or more, got {page}")
        snapshot = self._current()
        total = len(snapshot.samples)
        pages = max(1, -(-total // per_page))
        page = min(page, pages - 1)
        chosen = snapshot.samples[page * per_page:(page + 1) * per_page]
        return {"total": total, "page": page, "pages": pages, "per_page": per_page, "corrupt": snapshot.corrupt,
                "removed": snapshot.removed, "samples": [describe(self.root, s) for s in chosen]}

    def sample(self, image_id: str) -> Sample:
        """The live sample named ``image_id``; raises UnknownSample when there is none (deleted, or never)."""
        sample = self._current().by_id.get(check_sample_id(image_id))
        if sample is None:
            raise UnknownSample(f"no sample {image_id} in the dataset (deleted already?)")
        return sample

    def thumbnail(self, image_id: str, size: int = THUMBNAIL_PX) -> bytes:
        """The sample's frame as a JPEG with its target dot and the line from the car to it, its session and label
        (``data_stats.draw_tile``, as on the contact sheet of ``data stats``)."""
        sample = self.sample(image_id)
        image = sample.image_path.resolve()
        if not image.is_relative_to(self.root.resolve()):
            raise UnknownSample(f"sample {image_id}'s image is outside the dataset folder: not served")
        ok, jpeg = cv2.imencode(".jpg", draw_tile(sample, size), [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_JPEG_QUALITY])
        if not ok:
            raise JetracerError(f"could not encode the thumbnail of {image_id}")
        return jpeg.tobytes()


def sample_id(root: Path, sample: Sample) -> str:
    """A sample's id: its image path relative to the dataset folder, as the index names it."""
    return sample.image_path.relative_to(root).as_posix()


def describe(root: Path, sample: Sample) -> dict:
    """What the page shows of a sample: id, label, where it came from (source, mode) and when."""
    meta = sample.meta
    return {"id": sample_id(root, sample), "x": sample.x, "y": sample.y, "source": sample_origin(meta),
            "mode": meta.get("mode") if isinstance(meta.get("mode"), str) else "",
            "session": meta.get("session") if isinstance(meta.get("session"), str) else ""}
